"""The outbox: an event becomes one pending delivery per subscribed webhook, in the caller's transaction.

Writing deliveries next to the state change they report means an event is
delivered if and only if that change commits; the delivery worker sends
them later, from any control-plane process.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db.models import Webhook, WebhookDelivery, utcnow
from farm.ids import new_id

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def enqueue(session: Session, org_id: str, event_type: str, payload: dict[str, Any]) -> None:
    """Queue ``event_type`` with ``payload`` as its ``data`` for every webhook of the org that wants it.

    The body sent is the envelope ``{"id", "type", "created", "data"}``; the
    event id is shared by all of the event's deliveries and stays the same
    across retries, so receivers can deduplicate on it. Nothing is committed.
    """
    if not EVENT_TYPE.match(event_type):
        raise ValueError(f"not an event type: {event_type!r}")
    hooks = session.scalars(select(Webhook).where(Webhook.org_id == org_id, Webhook.deleted_at.is_(None))).all()
    targets = [h for h in hooks if subscribed(h.event_types, event_type)]
    if not targets:
        return
    event = {"id": new_id("whevt"), "type": event_type, "created": int(time.time()), "data": to_jsonable_python(payload)}
    now = utcnow()
    for hook in targets:
        session.add(WebhookDelivery(
            id=new_id("dlv"), webhook_id=hook.id, org_id=org_id, event_id=event["id"], event_type=event_type,
            payload=event, next_attempt_at=now, created_at=now,
        ))


def subscribed(patterns: list[str], event_type: str) -> bool:
    """No patterns: every event. ``job.*`` matches every job event; other patterns match exactly."""
    if not patterns:
        return True
    return any(event_type == p or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns)
