"""GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter

from farm.api.routes.openai.deps import GenerationDep, ReadingCaller
from farm.api.routes.openai.errors import ERROR_RESPONSES, SERVE_RESPONSES
from farm.api.routes.openai.models.serving import list_models
from farm.api.routes.openai.route import OpenAIRoute
from farm.openai.models import ModelList

router = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses={**ERROR_RESPONSES, 503: SERVE_RESPONSES[503]})


@router.get("/v1/models", response_model=ModelList)
async def models(_: ReadingCaller, gen: GenerationDep) -> ModelList:
    """Served models, OpenAI-style (`client.models.list()`)."""
    return list_models(gen)
