"""The model registry: which served model name runs what weights, and how.

The one place a model's engine, resources and scaling are written down: Serve's
config (:mod:`serve.llm`, :mod:`serve.diffusion.app`) and the batch pipelines'
model stages (``pipelines.stages.models``) are both derived from a
:class:`ModelSpec`. A laptop serves the tiny demo models (:mod:`serve.demo`);
a GPU cluster points ``FARM_MODELS__REGISTRY_FILE`` at a YAML file naming hub
ids or paths (see ``serve/models.example.yaml``). Swapping weights is
configuration, never code.

YAML shape::

    models:
      - name: llama-3.1-8b
        kind: llm
        source: meta-llama/Llama-3.1-8B-Instruct
        gpus: 1
        accelerator_type: L4
        engine_kwargs: {max_model_len: 8192}

``source`` is a hub id or a local path; a path starting with ``./`` or
``../`` is relative to the YAML file, ``~`` is expanded.

Vision-language models are a kind of their own, ``vlm``: chat models that
also take images. Their ``runtime`` says what runs them: ``vllm`` (GPU
clusters: Ray Serve LLM online, ``ray.data.llm``'s multimodal path in batch)
or ``transformers`` (the farm's own Serve deployment and a Ray Data actor
pool, for CPUs, where vLLM's multimodal models cannot load).

``batch_engine`` says where an LLM's ``batch.chat`` requests run. ``job``
(the default) starts a vLLM engine inside each batch's Ray Job
(``ray.data.llm``'s vLLM processor): a fixed start-up cost per batch (about
a minute on a small CPU), then the whole engine for that batch, the right
choice for 50,000-prompt batches on capacity of their own. ``serve`` sends
the batch's requests to the model's deployment in the farm's running Serve
LLM application (``ray.data.llm``'s ``ServeDeploymentProcessorConfig``): no
engine to start, so a small batch answers in seconds, sharing the warm
replicas with online traffic. If that deployment is not running when the
batch starts, the batch fails before any request runs, with a message
naming the application and the model; it never falls back to a job engine,
which could claim GPUs the Serve replicas hold. Only ``llm`` models take
``serve`` (``story.animatic``'s shot lists always use a job engine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ModelKind = Literal["llm", "diffusion", "vlm"]
Runtime = Literal["vllm", "transformers"]
BatchEngine = Literal["job", "serve"]


class ModelSpec(BaseModel):
    """One served model: its name, what it is, where its weights live, how it scales."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", description="Served model name")
    kind: ModelKind
    source: str = Field(min_length=1, description="Local path or hub id of the weights")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the engine (vLLM engine args, diffusers options)"
    )
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2, gt=0, description="Autoscaling target per replica")
    max_ongoing_requests: int = Field(default=8, ge=1, description="Back-pressure limit per replica")
    accelerator_type: str | None = Field(default=None, description='Ray accelerator type, e.g. "L4", "A10G"')
    gpus: float = Field(default=0, ge=0, description="GPUs per replica (fractions allowed)")
    cpus: float = Field(default=1, ge=0, description="CPUs per replica (Ray logical CPUs)")
    upscale_delay_s: float = Field(default=30, ge=0, description="Autoscaling: sustained load this long before adding replicas")
    downscale_delay_s: float = Field(default=600, ge=0, description="Autoscaling: idle this long before removing replicas")
    max_queued_requests: int = Field(
        default=64, ge=0, description="Back-pressure: requests waiting for a replica beyond this are refused at once (503)"
    )
    retry_after_s: float = Field(default=1, ge=0, description="Retry-After sent with refusals for back-pressure")
    max_batch_size: int = Field(default=8, ge=1, description="Diffusion: most images rendered in one batch")
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, description="Diffusion: longest wait to fill a batch")
    runtime: Runtime = Field(
        default="vllm", description="vlm: vllm (Ray Serve LLM / ray.data.llm) or transformers (the farm's own deployment, CPUs)"
    )
    batch_engine: BatchEngine = Field(
        default="job",
        description="llm: where batch.chat runs its requests: job (a vLLM engine in the batch's Ray Job) "
        "or serve (this model's deployment in the farm's running Serve LLM application)",
    )

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        return self

    @model_validator(mode="after")
    def _runtime_fits_kind(self) -> Self:
        if self.runtime == "transformers" and self.kind != "vlm":
            raise ValueError(f"runtime 'transformers' is for vlm models, not {self.kind}")
        return self

    @model_validator(mode="after")
    def _batch_engine_fits_kind(self) -> Self:
        if self.batch_engine == "serve" and self.kind != "llm":
            raise ValueError(f"batch_engine 'serve' is for llm models, not {self.kind}")
        return self

    @property
    def on_vllm(self) -> bool:
        """Served by vLLM through Ray Serve LLM and ``ray.data.llm`` (LLMs, and VLMs on the vllm runtime)."""
        return self.kind == "llm" or (self.kind == "vlm" and self.runtime == "vllm")


class ModelRegistry(BaseModel):
    """Served models by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelSpec]

    @model_validator(mode="after")
    def _keys_are_names(self) -> Self:
        for key, spec in self.models.items():
            if key != spec.name:
                raise ValueError(f"registry key {key!r} differs from its model's name {spec.name!r}")
        return self

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "(none)"
            raise KeyError(f"unknown model {name!r}; known models: {known}") from None

    def names(self) -> list[str]:
        return list(self.models)

    def of_kind(self, kind: ModelKind) -> list[ModelSpec]:
        return [spec for spec in self.models.values() if spec.kind == kind]

    def pick(self, kind: ModelKind, name: str | None = None) -> ModelSpec:
        """The named model of ``kind``, or the registry's first of that kind; KeyError saying what there is."""
        models = self.of_kind(kind)
        if name is None:
            if not models:
                raise KeyError(f"this farm's model registry has no {kind} model")
            return models[0]
        if name not in self.models or self.models[name].kind != kind:
            known = ", ".join(m.name for m in models) or "(none)"
            raise KeyError(f"unknown {kind} model {name!r}; this farm's {kind} models: {known}")
        return self.models[name]

    def __contains__(self, name: object) -> bool:
        return name in self.models

    @classmethod
    def from_specs(cls, specs: list[ModelSpec]) -> ModelRegistry:
        return _RegistryFile(models=specs).to_registry()

    @classmethod
    def from_yaml(cls, path: Path | str) -> ModelRegistry:
        """Load and validate a registry file; bad content raises ``pydantic.ValidationError``."""
        path = Path(path)
        data = yaml.safe_load(path.read_text())
        try:
            registry_file = _RegistryFile.model_validate(data, context={"base_dir": path.resolve().parent})
        except ValidationError as exc:  # name the file, not our private class, in the message
            raise ValidationError.from_exception_data(
                title=f"model registry {path}", line_errors=exc.errors(), hide_input=False
            ) from None
        return registry_file.to_registry()


class _RegistryFile(BaseModel):
    """The YAML document: a list of specs with unique names."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)

    @field_validator("models", mode="before")
    @classmethod
    def _resolve_relative_sources(cls, value: Any, info) -> Any:
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is None or not isinstance(value, list):
            return value
        return [_with_resolved_source(item, base_dir) for item in value]

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [spec.name for spec in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate model names: {', '.join(duplicates)}")
        return self

    def to_registry(self) -> ModelRegistry:
        return ModelRegistry(models={spec.name: spec for spec in self.models})


def _with_resolved_source(item: Any, base_dir: Path) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("source"), str):
        return item
    source: str = item["source"]
    if source.startswith("~"):
        source = str(Path(source).expanduser())
    elif source.startswith(("./", "../")):
        source = str((base_dir / source).resolve())
    return {**item, "source": source}
