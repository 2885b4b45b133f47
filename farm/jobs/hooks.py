"""Kind hooks: a kind's own reaction to its jobs' state changes, without the job code knowing the kind.

A kind names a control-plane module in ``KindInfo.hooks``; its
``on_transition(session, job)`` runs in the transaction of every state change
(submit included), after the job's own ``job.<state>`` event, so whatever it
writes commits or rolls back with the change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache

from sqlalchemy.orm import Session

from farm.db.models import Job
from kinds import UnknownKind, get_kind


@cache
def _hook(module: str) -> Callable[[Session, Job], None]:
    hook: Callable[[Session, Job], None] = importlib.import_module(module).on_transition
    return hook


def on_transition(session: Session, job: Job) -> None:
    """Run the job's kind hook, if the kind has one (a kind no longer loaded has none: it can still be failed or cancelled)."""
    try:
        module = get_kind(job.kind).hooks
    except UnknownKind:
        return
    if module is not None:
        _hook(module)(session, job)
