"""POST /v1/chat/completions and /v1/completions (HTTP only; logic in serving.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from farm.api.routes.openai.completions.serving import complete
from farm.api.routes.openai.deps import GeneratingCaller, GenerationDep
from farm.api.routes.openai.errors import SERVE_RESPONSES
from farm.api.routes.openai.route import OpenAIRoute
from farm.openai.completions import ChatCompletionRequest, CompletionRequest

COMPLETION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An OpenAI chat.completion / text_completion object, or with `stream: true` server-sent chunks",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}

router = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses={**SERVE_RESPONSES, **COMPLETION_RESPONSES})


@router.post("/v1/chat/completions", response_class=Response)
async def chat_completions(body: ChatCompletionRequest, caller: GeneratingCaller, gen: GenerationDep) -> Response:
    """Chat completion from a served LLM (`client.chat.completions.create`), streamed or not."""
    return await complete(gen, caller, body, "chat.completions")


@router.post("/v1/completions", response_class=Response)
async def completions(body: CompletionRequest, caller: GeneratingCaller, gen: GenerationDep) -> Response:
    """Text completion from a served LLM (`client.completions.create`), streamed or not."""
    return await complete(gen, caller, body, "completions")
