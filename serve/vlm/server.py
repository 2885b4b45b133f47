"""The vision-language Serve deployment: OpenAI chat completions with images, dynamic batches to the engine.

What Ray Serve LLM is for vLLM, on CPUs: ``POST /v1/chat/completions`` with
``image_url`` parts (data URLs; remote URLs only for the hosts in the
model's ``allowed_media_domains``, as vLLM's own setting of that name),
answered with OpenAI's ``chat.completion`` and its ``usage``. Concurrent
requests meet in one ``@serve.batch`` queue and are answered in one engine
call. Answers are not streamed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from serve.diffusion.protocol import ErrorBody, ErrorResponse, InvalidRequest
from serve.registry import ModelSpec
from serve.vlm.engine import TransformersVisionEngine, VisionEngine
from serve.vlm.protocol import VisionJob, VisionLimits, VisionResult, parse_messages

app = FastAPI(title="vlm", docs_url=None, redoc_url=None)


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type="invalid_request_error", param=param))
    return JSONResponse(body.model_dump(), status_code=status)


@app.exception_handler(RequestValidationError)
async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    return _error(400, f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}", ".".join(loc) or None)


@app.exception_handler(InvalidRequest)
async def _invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
    return _error(400, str(exc), exc.param)


class VisionChatRequest(BaseModel):
    """The chat completion fields this deployment reads; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    seed: int | None = None
    n: int = 1
    stream: bool = False


@serve.ingress(app)
class VisionServer:
    """One model's replicas. ``spec`` and ``limits`` are dicts so a Serve config file can carry them."""

    async def __init__(self, spec: dict[str, Any], limits: dict[str, Any] | None = None) -> None:
        self.spec = ModelSpec.model_validate(spec)
        self.limits = VisionLimits.model_validate(limits or {})
        self.allowed_hosts = list(self.spec.engine_kwargs.get("allowed_media_domains") or [])
        self.engine: VisionEngine = TransformersVisionEngine.from_spec(self.spec)
        await self.engine.start()
        self._answer.set_max_batch_size(self.spec.max_batch_size)
        self._answer.set_batch_wait_timeout_s(self.spec.batch_wait_timeout_s)

    async def check_health(self) -> None:
        await self.engine.check_health()

    @app.post("/v1/chat/completions", responses={400: {"model": ErrorResponse}})
    async def chat_completions(self, body: VisionChatRequest) -> JSONResponse:
        if body.stream:
            raise InvalidRequest("stream", f"{self.spec.name} answers without streaming; send stream=false")
        if body.n != 1:
            raise InvalidRequest("n", "n must be 1")
        max_tokens = body.max_completion_tokens or body.max_tokens or 64
        if max_tokens > self.limits.max_tokens:
            raise InvalidRequest("max_tokens", f"max_tokens must be at most {self.limits.max_tokens}")
        messages, images = await asyncio.to_thread(parse_messages, body.messages, self.limits, self.allowed_hosts)
        job = VisionJob(messages, tuple(images), max_tokens=max_tokens, temperature=body.temperature, seed=body.seed)
        result: VisionResult = await self._answer(job)
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.spec.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason,
                         "logprobs": None}],
            "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "total_tokens": result.prompt_tokens + result.completion_tokens},
        })

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _answer(self, jobs: list[VisionJob]) -> list[VisionResult]:
        return await self.engine.generate(jobs)
