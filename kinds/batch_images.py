"""`batch.images`: an OpenAI batch of image generations."""

from __future__ import annotations

from kinds.base import KindInfo, ModelUse, Output
from kinds.batch_common import BATCH_FILES, BATCH_HOOKS, BatchSpec


class BatchImagesSpec(BatchSpec):
    """OpenAI batch of /v1/images/generations requests, run with the diffusion engine on Ray Data."""

    def models_used(self) -> list[ModelUse]:
        """The lines name their models; the registry's first diffusion model stands for them (the usual single-model batch)."""
        return [ModelUse("diffusion")]


KIND = KindInfo(
    "batch.images", BatchImagesSpec, pipeline="pipelines.batch_images", hooks=BATCH_HOOKS,
    outputs={"images": Output("image", "many", "the images of each request (item = request line)"), **BATCH_FILES},
)
