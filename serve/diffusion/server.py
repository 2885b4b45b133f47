"""The diffusion Serve deployment: HTTP in, dynamic batches of compatible jobs to the engine.

Concurrent requests land in one ``@serve.batch`` queue as single-image jobs;
each batch is split by batch key (mode, size, steps, guidance, strength) and
every group is one pipeline call. A replica is one model, so "same model" is
given. Back-pressure is Serve's: ``max_ongoing_requests`` per replica, then
``max_queued_requests`` at the proxy, then an immediate 503 with
``Retry-After`` (see :mod:`serve.diffusion.app`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from serve.diffusion.engine import DiffusersEngine, DiffusionEngine
from serve.diffusion.protocol import (
    ErrorBody,
    ErrorResponse,
    GeneratedImage,
    ImageJob,
    ImageLimits,
    ImageRequest,
    ImageResponse,
    InvalidRequest,
    group_compatible,
)
from serve.registry import ModelSpec

app = FastAPI(title="diffusion", docs_url=None, redoc_url=None)


def _error(status: int, message: str, param: str | None = None, type_: str = "invalid_request_error") -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=type_, param=param))
    return JSONResponse(body.model_dump(), status_code=status)


@app.exception_handler(RequestValidationError)
async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    return _error(400, f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}", loc[0] if loc else None)


@app.exception_handler(InvalidRequest)
async def _invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
    return _error(400, str(exc), exc.param)


class Rendered:
    """One job's result as the batch hands it back."""

    __slots__ = ("png", "batch_size", "seconds")

    def __init__(self, png: bytes, batch_size: int, seconds: float) -> None:
        self.png, self.batch_size, self.seconds = png, batch_size, seconds


@serve.ingress(app)
class DiffusionServer:
    """One model's replicas. ``spec`` and ``limits`` are dicts so a Serve config file can carry them."""

    async def __init__(self, spec: dict[str, Any], limits: dict[str, Any] | None = None) -> None:
        self.spec = ModelSpec.model_validate(spec)
        self.limits = ImageLimits.model_validate(limits or {})
        self.engine: DiffusionEngine = DiffusersEngine.from_spec(self.spec)
        await self.engine.start()
        self._render.set_max_batch_size(self.spec.max_batch_size)
        self._render.set_batch_wait_timeout_s(self.spec.batch_wait_timeout_s)

    async def check_health(self) -> None:
        await self.engine.check_health()

    @app.get("/health")
    async def health(self) -> dict[str, Any]:
        await self.engine.check_health()
        return {"model": self.spec.name, "defaults": self.engine.defaults.model_dump(), "limits": self.limits.model_dump()}

    @app.post("/generate", response_model=ImageResponse, responses={400: {"model": ErrorResponse}})
    async def generate(self, body: ImageRequest) -> ImageResponse:
        body.check(self.limits)
        jobs = body.jobs(self.engine.defaults)
        results: list[Rendered] = await asyncio.gather(*(self._render(job) for job in jobs))
        return ImageResponse(
            model=self.spec.name,
            data=[
                GeneratedImage(b64_png=base64.b64encode(r.png).decode(), seed=job.seed, batch_size=r.batch_size)
                for job, r in zip(jobs, results, strict=True)
            ],
            replica_seconds=sum(r.seconds for r in results),
        )

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _render(self, jobs: list[ImageJob]) -> list[Rendered]:
        """A batch of single-image jobs; each compatible group is one pipeline call."""
        out: list[Rendered | None] = [None] * len(jobs)
        for group in group_compatible(jobs):
            start = time.perf_counter()
            pngs = await self.engine.generate([jobs[i] for i in group])
            share = (time.perf_counter() - start) / len(group)
            for i, png in zip(group, pngs, strict=True):
                out[i] = Rendered(png, len(group), share)
        return out  # type: ignore[return-value]
