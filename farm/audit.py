"""Audit trail: one row per successful mutation, written in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.db.models import AuditEvent
from farm.ids import new_id


def record(
    session: Session,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str,
    org_id: str | None = None,
    **detail: Any,
) -> AuditEvent:
    event = AuditEvent(
        id=new_id("evt"),
        org_id=org_id or (actor.org_id if actor else ""),
        key_id=actor.key_id if actor else None,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )
    session.add(event)
    return event
