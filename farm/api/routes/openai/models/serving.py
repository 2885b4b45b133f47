"""The model list comes from the model registry: what `farm up` deployed, no Serve round trip."""

from __future__ import annotations

from farm.api.routes.openai.state import Generation
from farm.openai.models import ModelCard, ModelList


def list_models(gen: Generation) -> ModelList:
    registry = gen.registry()
    return ModelList(
        data=[ModelCard(id=spec.name, created=gen.registry_loaded_at, kind=spec.kind) for spec in registry.models.values()]
    )
