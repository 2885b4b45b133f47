"""`batch.images`: an OpenAI batch of image generations through the shared diffusion stage.

Each request becomes the diffusion deployment's request (the same
conversion as the online route's), the stage renders it in an actor pool and
stores the PNGs through the door's object handle, and this driver records
them as the request's ``images`` and writes its output line with their ids
and URLs, and the ``worker`` (Ray node and process) that rendered them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from farm.openai.batch_lines import error_line, output_line
from farm.openai.images import ImageGenerationRequest
from farm.runner.context import JobContext
from pipelines.batch_common import BatchRun, by_model, run_batch
from pipelines.stages.models.diffusion import DiffusionStage, ImageTask, RenderedImages
from pipelines.stages.models.pool import payloads, run_pool, to_payloads
from serve.diffusion.protocol import ImageRequest
from serve.registry import ModelSpec

ACTORS = (1, 2)  # engines per model: one, a second while the work lasts
ENGINES_START_S = 1800  # longest wait for the pool's first engines (GPU nodes may have to be added first)


def pool_size(spec: ModelSpec) -> tuple[int, int]:
    """`ACTORS`, raised to the model's ``min_replicas``: the registry's floor holds for batch as for serving."""
    low = max(ACTORS[0], spec.min_replicas)
    return low, max(low, ACTORS[1])


def to_task(row: dict[str, Any]) -> ImageTask:
    """A request line (validated with the online route's model) as the diffusion stage's task."""
    body = ImageGenerationRequest.model_validate_json(row["body"])
    return ImageTask(int(row["line"]), row["custom_id"], ImageRequest.model_validate(body.diffusion_body()))


def recorded(ctx: JobContext, results: Iterator[RenderedImages]) -> Iterator[dict[str, Any]]:
    """Each result's images recorded as the ``images`` of its item (the request's line), as result rows."""
    for r in results:
        ids = [ctx.record_output(r.item, "images", stored) for stored in r.stored]
        yield {"line": r.item, "custom_id": r.name, "asset_ids": ids, "seconds": r.seconds, "error": r.error, "param": r.param,
               "worker": r.worker}


def to_line(base_url: str) -> Any:
    def convert(row: dict[str, Any]) -> tuple[bool, str]:
        if row["error"]:
            return False, error_line(row["custom_id"], "invalid_request", str(row["error"])[:1000], param=row["param"])
        ids = row["asset_ids"]
        data = [{"url": f"{base_url}/v1/assets/{a}/content", "asset_id": a, "revised_prompt": None} for a in ids]
        return True, output_line(row["custom_id"], {"created": int(time.time()), "data": data,
                                                     "usage": {"images": len(ids), "seconds": round(row["seconds"], 3)},
                                                     "worker": row["worker"]})

    return convert


def run(ctx: JobContext) -> None:
    registry = ctx.models

    def execute(batch: BatchRun, requests: Path) -> None:
        import ray.data

        ctx.connect_ray()
        # Work starts once the pool's floor of engines is up, so it spreads over all of them (and their
        # nodes) instead of going to whichever loaded its model first; an engine never placed fails the run.
        ray.data.DataContext.get_current().wait_for_min_actors_s = ENGINES_START_S
        for name, ds in by_model(requests):
            stage = DiffusionStage(registry.get(name), ctx.objects)
            rendered = run_pool(stage, to_payloads(ds, to_task), batch_size=stage.spec.max_batch_size, concurrency=pool_size(stage.spec))
            batch.consume(recorded(ctx, payloads(rendered)), to_line(ctx.base_url))

    run_batch(ctx, {m.name for m in registry.of_kind("diffusion")}, execute)
