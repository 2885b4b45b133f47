"""The OpenAI-compatible generation API: the farm's front door to Ray Serve.

Per endpoint family, vLLM-style: ``api_router.py`` (HTTP only) and
``serving.py`` (logic); the request/response models are the protocol
package :mod:`farm.openai`, shared with batch validation and the batch
pipelines. Shared here: ``errors`` (OpenAI's error shape as HTTP answers),
``route`` (the route class that gives every error that shape), ``upstream``
(HTTP to Serve), ``deps`` (key, rate limit, project), ``state`` (what the
app holds).
"""

from __future__ import annotations

from fastapi import APIRouter

from farm.api.routes.openai.batches.api_router import router as batches_router
from farm.api.routes.openai.completions.api_router import router as completions_router
from farm.api.routes.openai.files.api_router import router as files_router
from farm.api.routes.openai.images.api_router import router as images_router
from farm.api.routes.openai.models.api_router import router as models_router
from farm.api.routes.openai.state import Generation
from farm.api.routes.openai.usage.api_router import router as usage_router

ROUTERS: list[APIRouter] = [completions_router, models_router, images_router, usage_router, files_router, batches_router]

__all__ = ["ROUTERS", "Generation"]
