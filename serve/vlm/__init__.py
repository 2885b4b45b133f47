"""Vision-language serving on CPUs: the engine protocol, its transformers implementation, the Serve deployment.

GPU clusters serve vision-language models through Ray Serve LLM (vLLM); this
package is for the ``transformers`` runtime of the model registry, where
vLLM's multimodal models cannot load. Importing it is cheap; Ray, torch and
transformers load with the modules that need them.
"""

from serve.vlm.protocol import VisionJob, VisionLimits, VisionResult

__all__ = ["VisionJob", "VisionLimits", "VisionResult"]
