"""The registry of job kinds: a kind is a spec model plus the pipeline module that runs it.

Adding a kind is one spec class decorated with ``@job_kind`` and one module
in ``pipelines/`` exposing ``run(ctx)``; nothing else branches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict


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


@dataclass(frozen=True)
class KindInfo:
    name: str
    spec: type[JobSpec]
    pipeline: str  # module with run(ctx), imported by the Ray Job runner only
    description: str


KINDS: dict[str, KindInfo] = {}
S = TypeVar("S", bound=type[JobSpec])


def job_kind(name: str, pipeline: str) -> Callable[[S], S]:
    def register(cls: S) -> S:
        if name in KINDS:
            raise ValueError(f"job kind {name!r} registered twice")
        cls.kind = name
        KINDS[name] = KindInfo(name, cls, pipeline, (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return register


class UnknownKind(KeyError):
    def __str__(self) -> str:
        return f"unknown job kind {self.args[0]!r}; known kinds: {', '.join(sorted(KINDS))}"


def get_kind(name: str) -> KindInfo:
    from farm.jobs import specs  # noqa: F401  (registers the built-in kinds)

    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def parse_spec(kind: str, spec: dict[str, Any]) -> JobSpec:
    return get_kind(kind).spec.model_validate(spec)
