"""OpenAI's model list, plus the farm's ``kind`` (``llm``, ``diffusion`` or ``vlm``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "storycore-farm"
    kind: str = Field(description="llm (chat, completions), diffusion (images) or vlm (chat with images)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
