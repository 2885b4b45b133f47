"""What a job kind is: a typed spec, what it produces, where its pipeline and hooks live.

Plain pydantic and dataclasses, so the control plane and the pipelines (and
any tool) can import every kind without FastAPI, SQLAlchemy, Ray or torch.
Pipelines and hooks are named by module path and imported only by the
process that runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

#: The closed vocabulary of what jobs produce. A workflow wires one kind's
#: output into another kind's input by these types, never by file names.
OutputType = Literal[
    "video",  # a playable video (clip, restyled video, animatic)
    "video_shots",  # the detected frame ranges of a video (``<video>.shots.json``)
    "story_shotlist",  # the planned shots of a story
    "image",  # a still: keyframe, contact sheet, storyboard, generated image
    "captions",  # per-shot captions or subtitles of a video
    "table",  # a tabular report (CSV)
    "edit_list",  # an edit decision list (EDL)
    "jsonl",  # line-delimited JSON records (batch output and error files)
    "report",  # a JSON document of what a job measured (flicker, checksums, settings)
]
OUTPUT_TYPES: tuple[str, ...] = get_args(OutputType)

#: How many assets one item yields for an output: exactly one, or any number.
Cardinality = Literal["one", "many"]


@dataclass(frozen=True)
class Output:
    """One named output of a kind: its type and how many assets each item yields."""

    type: OutputType
    per_item: Cardinality = "one"
    description: str = ""

    def __post_init__(self) -> None:
        """The vocabulary is closed: a typo here would make an output no workflow can wire."""
        if self.type not in OUTPUT_TYPES:
            raise ValueError(f"output type {self.type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        if self.per_item not in get_args(Cardinality):
            raise ValueError(f"per_item must be 'one' or 'many', not {self.per_item!r}")


#: The kinds of model the registry serves (as ``serve.registry.ModelKind``, which kinds may not import).
ModelKind = Literal["llm", "diffusion", "vlm"]


@dataclass(frozen=True)
class JobResources:
    """What a running job holds on the cluster besides its driver, as Ray's logical resources.

    Declared as data so the dispatcher can ask Ray's autoscaler for it while
    the job still waits in the farm's queue (Ray sees no demand before the
    job runs), and so the farm's GPU cap can be kept.
    """

    cpus: float = 0.0
    gpus: float = 0.0
    accelerator_type: str | None = None  # Ray's accelerator type ("L4", "A10G"); None: any GPU


@dataclass(frozen=True)
class ModelUse:
    """A registry model a job runs: by name, or (``name=None``) the registry's first model of ``kind``.

    The registry entry says what one engine holds (CPUs, GPUs, accelerator),
    so a kind names its models and never repeats their resources.
    """

    kind: ModelKind
    name: str | None = None


class JobSpec(BaseModel):
    """Base of every kind's spec: strict, so typos are errors, not silent defaults."""

    model_config = ConfigDict(extra="forbid")

    kind: ClassVar[str]

    def total_items(self) -> int | None:
        """Known up front for some kinds; the pipeline may set it later."""
        return None

    def max_failed_fraction(self) -> float:
        """Fail the whole job when more than this share of items failed."""
        return 1.0

    def resources(self) -> JobResources:
        """What the job's own work holds besides its models' engines; most kinds need only CPUs, asked for by Ray itself."""
        return JobResources()

    def models_used(self) -> list[ModelUse]:
        """The registry models the job runs, one engine each at least (their GPUs are what the farm asks the autoscaler for)."""
        return []


class VideoInputsSpec(JobSpec):
    """A kind whose items are videos: named assets, or every video of a project at submit time."""

    asset_ids: list[str] = Field(default_factory=list, max_length=10_000, description="the videos, one item each")
    project_id: str | None = Field(default=None, description="instead of asset_ids: every video in this project at submit time")

    @model_validator(mode="after")
    def _one_input(self) -> VideoInputsSpec:
        if bool(self.asset_ids) == bool(self.project_id):
            raise ValueError("give either asset_ids or project_id")
        return self

    def total_items(self) -> int | None:
        return len(self.asset_ids) or None


@dataclass(frozen=True)
class KindInfo:
    """A job kind: its name, spec model, pipeline module, outputs and optional hooks.

    ``pipeline`` is a module with ``run(ctx)``, imported by the Ray Job runner
    only. ``hooks`` is a control-plane module with
    ``on_transition(session, job)``, called in the transaction of every state
    change of a job of this kind (``None``: the kind needs none).
    """

    name: str
    spec: type[JobSpec]
    pipeline: str
    outputs: Mapping[str, Output] = field(default_factory=dict)
    hooks: str | None = None

    def __post_init__(self) -> None:
        self.spec.kind = self.name

    @property
    def description(self) -> str:
        return (self.spec.__doc__ or "").strip().split("\n")[0]

    def output(self, name: str) -> Output:
        try:
            return self.outputs[name]
        except KeyError:
            raise KeyError(f"job kind {self.name!r} has no output {name!r}; it has: {', '.join(self.outputs) or '(none)'}") from None


def known_model(name: str | None, kind: str, info: ValidationInfo) -> str | None:
    """Check a model name against the registry the submitter passed as context (``{"models": {name: kind}}``).

    The API passes the farm's registry, so a typo is a 422 naming the field at
    submit; without a context (a runner re-reading a stored spec) it passes.
    """
    models = (info.context or {}).get("models")
    if name is None or models is None:
        return name
    if models.get(name) != kind:
        known = ", ".join(sorted(n for n, k in models.items() if k == kind)) or "(none)"
        raise ValueError(f"unknown {kind} model {name!r}; this farm's {kind} models: {known}")
    return name
