"""What the OpenAI-compatible routes hold for the app's lifetime.

One :class:`Generation` per app (``app.state.generation``): the Serve client,
the per-key rate limiter, the verified-key cache, the usage recorder and
the model registry. The
lifespan starts and stops it; routes reach it through ``GenerationDep``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from farm.api.routes.openai.errors import unavailable
from farm.api.routes.openai.keycache import KeyCache
from farm.api.routes.openai.upstream import ServeClient
from farm.db import Database
from farm.openai.errors import OpenAIError
from farm.ratelimit import RateLimiter
from farm.settings import Settings
from farm.usage import UsageRecorder

if TYPE_CHECKING:
    from serve.registry import ModelKind, ModelRegistry, ModelSpec


class Generation:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.serve.rate_limit_rps, settings.serve.rate_limit_burst)
        self.usage = UsageRecorder(db)
        self.keys = KeyCache(settings.serve.key_cache_s)
        self._serve: ServeClient | None = None
        self._registry: ModelRegistry | None = None
        self.registry_loaded_at = 0

    @property
    def serve(self) -> ServeClient:
        if self._serve is None:
            raise unavailable("the generation API is starting", retry_after_s=1)
        return self._serve

    async def start(self) -> None:
        self.usage.start()
        self._serve = ServeClient(self.settings.serve)

    async def stop(self) -> None:
        if self._serve is not None:
            await self._serve.aclose()
            self._serve = None
        self.usage.stop()

    def registry(self) -> ModelRegistry:
        """The served models (the same registry `farm up` deployed); loaded once."""
        if self._registry is None:
            from serve.demo import load_registry  # farm never imports serve at module load

            try:
                self._registry = load_registry(self.settings.models.registry_file, self.settings.models.cache_dir)
            except (OSError, ValueError) as exc:
                raise unavailable(f"the model registry cannot be read: {exc}", retry_after_s=60) from None
            self.registry_loaded_at = int(time.time())
        return self._registry

    def model(self, name: str | None, kind: ModelKind | tuple[ModelKind, ...], param: str = "model") -> ModelSpec:
        """The registry entry for ``name`` (or the first model of ``kind``, or of the first of several kinds); 404 if there is none."""
        registry = self.registry()
        kinds = kind if isinstance(kind, tuple) else (kind,)
        what = " or ".join(kinds)
        if name is None:
            models = [m for k in kinds for m in registry.of_kind(k)]
            if not models:
                raise OpenAIError(404, f"no {what} model is served by this farm", param=param, code="model_not_found")
            return models[0]
        spec = registry.models.get(name)
        if spec is None or spec.kind not in kinds:
            known = ", ".join(s.name for k in kinds for s in registry.of_kind(k)) or "(none)"
            raise OpenAIError(404, f"the model '{name}' does not exist; {what} models: {known}", param=param, code="model_not_found")
        return spec
