"""Diffusion serving: the engine protocol, its diffusers implementation, the Serve deployment.

Importing this package is cheap; Ray, torch and diffusers load with the
modules that need them.
"""

from serve.diffusion.protocol import ImageJob, ImageLimits, ImageRequest, ImageResponse, InvalidRequest

__all__ = ["ImageJob", "ImageLimits", "ImageRequest", "ImageResponse", "InvalidRequest"]
