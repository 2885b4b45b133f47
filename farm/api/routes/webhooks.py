"""/v1/webhooks: an admin registers the org's endpoints and reads their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.api.deps import Admin, RuntimeDep, SessionDep, well_formed
from farm.api.errors import ERROR_RESPONSES, ApiError, not_found
from farm.api.pagination import Cursor, Limit, paginate, paginate_map
from farm.api.schemas import Page, Public
from farm.db.models import Webhook, WebhookDelivery
from farm.webhooks.registry import create_webhook, delete_webhook
from farm.webhooks.targets import TargetRefused

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)

EventPattern = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z][a-z0-9_]*((\.[a-z][a-z0-9_]*)+(\.\*)?|\.\*)$")]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)] = Field(
        description="http(s) URL that receives POSTed events; checked against the farm's allowlist"
    )
    event_types: list[EventPattern] = Field(
        default_factory=list, max_length=50,
        description="Events to send, e.g. job.succeeded or job.* (empty: every event)",
    )


class WebhookPublic(Public):
    id: str
    url: str
    event_types: list[str]
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Signs every delivery (X-Farm-Signature); shown only in this response")


class AttemptPublic(Public):
    attempt: int
    status_code: int | None = Field(description="The receiver's HTTP status; null when no answer came")
    error: str | None
    duration_ms: int
    at: datetime


class DeliveryPublic(Public):
    id: str
    webhook_id: str
    event_id: str = Field(description="The same on every attempt: deduplicate on it")
    event_type: str
    state: str = Field(description="pending, succeeded or failed")
    payload: dict[str, Any] = Field(description="The JSON body sent")
    next_attempt_at: datetime | None = Field(description="When the next attempt is due; null once settled")
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptPublic]

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryPublic:
        data = {name: getattr(delivery, name) for name in cls.model_fields if name not in ("attempts", "next_attempt_at")}
        pending = delivery.state == "pending"
        return cls(**data, next_attempt_at=delivery.next_attempt_at if pending else None,
                   attempts=[AttemptPublic.model_validate(a) for a in delivery.attempt_log])


def _load(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    hook = session.get(Webhook, webhook_id) if well_formed(webhook_id) else None
    if hook is None or hook.org_id != principal.org_id or hook.deleted_at is not None:
        raise not_found("webhook")
    return hook


@router.post("", status_code=201, response_model=WebhookCreated)
def create(body: WebhookCreate, principal: Admin, session: SessionDep, rt: RuntimeDep) -> WebhookCreated:
    try:
        hook = create_webhook(session, principal.org_id, body.url, body.event_types, rt.settings.webhooks, principal.key_id)
    except TargetRefused as exc:
        raise ApiError(422, f"url: {exc}") from None
    audit.record(session, principal, "webhook.create", "webhook", hook.id, url=hook.url, event_types=hook.event_types)
    session.commit()
    return WebhookCreated(**WebhookPublic.model_validate(hook).model_dump(), secret=hook.secret)


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(principal: Admin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[WebhookPublic]:
    stmt = select(Webhook).where(Webhook.org_id == principal.org_id, Webhook.deleted_at.is_(None))
    return paginate(session, stmt, Webhook.id, WebhookPublic, limit, cursor)


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: str, principal: Admin, session: SessionDep) -> Webhook:
    return _load(session, principal, webhook_id)


@router.delete("/{webhook_id}", response_model=WebhookPublic)
def delete(webhook_id: str, principal: Admin, session: SessionDep) -> Webhook:
    """Nothing more is sent to it; deliveries still pending are marked failed."""
    hook = _load(session, principal, webhook_id)
    delete_webhook(session, hook)
    audit.record(session, principal, "webhook.delete", "webhook", hook.id, url=hook.url)
    session.commit()
    return hook


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    webhook_id: str,
    principal: Admin,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    state: Annotated[Literal["pending", "succeeded", "failed"] | None, Query(description="Only deliveries in this state")] = None,
) -> Page[DeliveryPublic]:
    """Newest first, each with every attempt made so far."""
    hook = _load(session, principal, webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if state:
        stmt = stmt.where(WebhookDelivery.state == state)
    return paginate_map(session, stmt, WebhookDelivery.id, DeliveryPublic.of, limit, cursor)
