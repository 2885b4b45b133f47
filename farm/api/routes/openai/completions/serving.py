"""Relay chat and text completions to the LLM application; count their tokens.

Non-streamed answers pass through as the same bytes. Streamed answers pass
through event by event; Serve is always asked for the final usage chunk
(``stream_options.include_usage``) so tokens can be counted, and that chunk
is dropped again when the client did not ask for it. Usage is recorded when
the answer ends, also when the client goes away mid-stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Response
from fastapi.responses import StreamingResponse

from farm.api.routes.openai.deps import Caller
from farm.api.routes.openai.state import Generation
from farm.api.routes.openai.upstream import Stream
from farm.openai.completions import ChatCompletionRequest, CompletionRequest
from farm.openai.media import check_media
from farm.usage import Usage

LLM_PATHS = {"chat.completions": "/llm/v1/chat/completions", "completions": "/llm/v1/completions"}


async def complete(gen: Generation, caller: Caller, body: ChatCompletionRequest | CompletionRequest, endpoint: str) -> Response:
    path = LLM_PATHS[endpoint]
    if isinstance(body, ChatCompletionRequest):  # vision-language models chat too; media parts are checked here first
        spec = gen.model(body.model, ("llm", "vlm"))
        check_media(body.messages, max_bytes=gen.settings.serve.max_media_bytes, allowed_hosts=gen.settings.serve.media_allowed_hosts)
        if not spec.on_vllm:  # the farm's own deployment (transformers runtime)
            from serve.config import vlm_route  # farm never imports serve at module load

            path = f"{vlm_route(spec.name)}/v1/chat/completions"
    else:
        spec = gen.model(body.model, "llm")
    usage = Usage(
        org_id=caller.principal.org_id,
        key_id=caller.principal.key_id,
        project_id=caller.project_id,
        endpoint=endpoint,
        model=spec.name,
    )
    start = time.perf_counter()
    if not body.stream:
        upstream = await gen.serve.post(path, body.upstream_body())
        usage.replica_seconds = time.perf_counter() - start
        _count(usage, _usage_of(upstream.content))
        gen.usage.record(usage)
        return Response(upstream.content, media_type="application/json")
    upstream = await gen.serve.stream(path, body.upstream_body())
    events = _relay(gen, upstream, usage, start, keep_usage_chunk=body.wants_usage_chunk)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _relay(gen: Generation, upstream: Stream, usage: Usage, start: float, *, keep_usage_chunk: bool) -> AsyncIterator[bytes]:
    """Server-sent events from Serve, relayed as whole events (those that arrive together go out together).

    Usage is recorded before ``[DONE]`` goes out, so a client that has read
    its stream to the end finds it in ``/v1/usage``; or, failing that, when
    the stream ends some other way.
    """
    recorded = False

    def settle() -> None:
        nonlocal recorded
        if not recorded:
            recorded = True
            usage.replica_seconds = time.perf_counter() - start
            gen.usage.record(usage)

    buffer = b""
    try:
        async for chunk in upstream.aiter_bytes():
            buffer += chunk
            cut = buffer.rfind(b"\n\n") + 2
            if cut < 2:
                continue  # no whole event yet
            whole, buffer = buffer[:cut], buffer[cut:]
            if b'"usage"' in whole or b"[DONE]" in whole:
                whole = _settle_events(whole, usage, settle, keep_usage_chunk)
            if whole:
                yield whole  # every whole event that arrived together, in one write
        if buffer.strip():
            yield buffer
    finally:
        await upstream.aclose()
        settle()


def _settle_events(events: bytes, usage: Usage, settle: Callable[[], None], keep_usage_chunk: bool) -> bytes:
    """Whole events with the usage counted, our own usage-only chunk dropped, and usage recorded before ``[DONE]``."""
    kept = []
    for event in events.split(b"\n\n")[:-1]:
        event += b"\n\n"
        if b'"usage"' in event and (data := _event_json(event)) is not None and data.get("usage"):
            _count(usage, data["usage"])
            if not keep_usage_chunk and not data.get("choices"):
                continue  # the usage-only chunk we asked for ourselves
        if event.startswith(b"data: [DONE]"):
            settle()
        kept.append(event)
    return b"".join(kept)


def _event_json(event: bytes) -> dict[str, Any] | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                return None
            try:
                data = json.loads(payload)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def _usage_of(content: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data.get("usage") if isinstance(data, dict) else None


def _count(usage: Usage, reported: dict[str, Any] | None) -> None:
    if not reported:
        return
    usage.prompt_tokens = int(reported.get("prompt_tokens") or 0)
    usage.completion_tokens = int(reported.get("completion_tokens") or 0)
