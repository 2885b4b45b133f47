"""A stage that holds a diffusion engine: image requests in, stored PNGs out.

The engine is the one a Serve replica holds (``DiffusersEngine.from_spec``:
same weights, options and batch padding), so a request with a seed gives the
same image in batch as online. A batch of requests is checked and expanded
into single-image jobs as the deployment does; jobs of the whole batch that
share a batch key are rendered together, ``max_batch_size`` per engine call.
Images are written through the door's `ObjectHandle`; the driver records
them. No database is opened here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.stages.base import Stage
from pipelines.stages.models import model_resources
from pipelines.stages.worker import worker_id
from serve.diffusion.protocol import ImageJob, ImageLimits, ImageRequest, group_compatible
from serve.registry import ModelSpec

if TYPE_CHECKING:
    from farm.runner.objects import ObjectHandle, StoredFile
    from serve.diffusion.engine import DiffusionEngine


@dataclass(frozen=True)
class ImageTask:
    """One request to render: ``item`` and ``name`` travel with it, ``name`` prefixes its images' names."""

    item: int
    name: str
    request: ImageRequest


@dataclass(frozen=True)
class RenderedImages:
    """One task's images in seed order, stored; or why it has none (``param`` names the offending field)."""

    item: int
    name: str
    stored: list[StoredFile] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seconds: float = 0.0  # engine time: each call's time split over the images in it
    error: str | None = None
    param: str | None = None
    worker: str | None = None  # node:pid of the engine that rendered it (`pipelines.stages.worker`)


class DiffusionStage(Stage[ImageTask, RenderedImages]):
    """Holds one model's diffusion engine; renders batches of `ImageTask`s into `RenderedImages`."""

    def __init__(self, spec: ModelSpec, objects: ObjectHandle, limits: ImageLimits | None = None) -> None:
        if spec.kind != "diffusion":
            raise ValueError(f"{spec.name} is a {spec.kind} model, not a diffusion model")
        self.spec, self.objects, self.limits = spec, objects, limits or ImageLimits()
        self.resources = model_resources(spec)
        self._engine: DiffusionEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_engine": None, "_loop": None}  # each worker loads its own

    def setup(self) -> None:
        from serve.diffusion.engine import DiffusersEngine

        self._loop = asyncio.new_event_loop()
        self._engine = DiffusersEngine.from_spec(self.spec)
        self._loop.run_until_complete(self._engine.start())

    def process(self, task: ImageTask) -> list[RenderedImages]:
        return self.process_batch([task])

    def process_batch(self, tasks: list[ImageTask]) -> list[RenderedImages]:
        """Every task of the batch, its images rendered together with the other tasks' compatible ones."""
        assert self._engine is not None, "setup() first"
        jobs: list[ImageJob] = []
        mine: list[list[int] | ValueError] = []  # per task: its jobs' indices, or why it has none
        for task in tasks:
            try:
                task.request.check(self.limits)
                expanded = task.request.jobs(self._engine.defaults)
            except ValueError as exc:  # InvalidRequest names its field; anything else is the body's fault
                mine.append(exc)
                continue
            mine.append(list(range(len(jobs), len(jobs) + len(expanded))))
            jobs += expanded
        pngs, seconds = self._render(jobs)
        out: list[RenderedImages] = []
        for task, indices in zip(tasks, mine, strict=True):
            if isinstance(indices, ValueError):
                param = getattr(indices, "param", None)
                out.append(RenderedImages(task.item, task.name, error=f"{param or 'body'}: {indices}", param=param))
                continue
            stored = [self.objects.put(f"{task.name}-{n}.png", pngs[j]) for n, j in enumerate(indices)]
            out.append(RenderedImages(task.item, task.name, stored, [jobs[j].seed for j in indices],
                                      sum(seconds[j] for j in indices), worker=worker_id()))
        return out

    def _render(self, jobs: list[ImageJob]) -> tuple[list[bytes], list[float]]:
        """PNG bytes and engine seconds per job: compatible jobs together, ``max_batch_size`` per call."""
        assert self._engine is not None and self._loop is not None
        pngs: list[bytes] = [b""] * len(jobs)
        seconds = [0.0] * len(jobs)
        size = self.spec.max_batch_size
        for group in group_compatible(jobs):
            for start in range(0, len(group), size):
                chunk = group[start:start + size]
                began = time.perf_counter()
                rendered = self._loop.run_until_complete(self._engine.generate([jobs[i] for i in chunk]))
                share = (time.perf_counter() - began) / len(chunk)
                for i, png in zip(chunk, rendered, strict=True):
                    pngs[i], seconds[i] = png, share
        return pngs, seconds
