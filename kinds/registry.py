"""The kinds the farm knows: the built-in list, plus extra kind modules named in settings.

A kind module exposes ``KIND`` (a `KindInfo`). Adding a kind is one module
here (its spec) added to `BUILTIN`, and one pipeline module that the spec
names; nothing else branches on kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

from kinds.base import JobSpec, KindInfo

#: Every built-in kind's module, in the order ``farm jobs kinds`` lists them.
BUILTIN: tuple[str, ...] = (
    "kinds.debug_sleep",
    "kinds.video_shots",
    "kinds.batch_chat",
    "kinds.batch_images",
    "kinds.video_restyle",
    "kinds.video_caption",
    "kinds.story_animatic",
    "kinds.workflow",
)

_KINDS: dict[str, KindInfo] = {}
_LOADED: set[str] = set()


class UnknownKind(KeyError):
    def __str__(self) -> str:
        return f"unknown job kind {self.args[0]!r}; known kinds: {', '.join(sorted(all_kinds()))}"


def load(modules: Iterable[str] = ()) -> None:
    """Import the built-in kind modules and any extra ones (``FARM_EXTRA_KINDS``); idempotent."""
    for path in (*BUILTIN, *modules):
        if path in _LOADED:
            continue
        info = importlib.import_module(path).KIND
        if not isinstance(info, KindInfo):
            raise TypeError(f"{path}.KIND is not a KindInfo")
        known = _KINDS.get(info.name)
        if known is not None and known is not info:
            raise ValueError(f"job kind {info.name!r} is defined twice ({path})")
        _KINDS[info.name] = info
        _LOADED.add(path)


def all_kinds() -> dict[str, KindInfo]:
    load()
    return dict(_KINDS)


def get_kind(name: str) -> KindInfo:
    load()
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(name) from None


def parse_spec(kind: str, spec: dict[str, Any], context: dict[str, Any] | None = None) -> JobSpec:
    """The kind's spec; ``context`` carries what validation may check against (``{"models": {name: kind}}``)."""
    return get_kind(kind).spec.model_validate(spec, context=context)


def extra_modules(value: str | Sequence[str] | None) -> list[str]:
    """``"a.b, c.d"`` or a list → module paths."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [m.strip() for m in items if m.strip()]
