"""Webhooks: the org's endpoints and their recent deliveries with every attempt."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from farm.api.deps import SessionDep
from farm.db.models import Webhook, WebhookDelivery
from farm.ui.auth import UiUserDep
from farm.ui.web import render

router = APIRouter()
RECENT = 20


@router.get("/webhooks")
def webhooks_page(request: Request, user: UiUserDep, session: SessionDep) -> Response:
    org = user.principal.org_id
    hooks = list(session.scalars(select(Webhook).where(Webhook.org_id == org, Webhook.deleted_at.is_(None)).order_by(Webhook.id.desc()).limit(100)))
    deliveries = {
        h.id: list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == h.id).order_by(WebhookDelivery.id.desc()).limit(RECENT)))
        for h in hooks
    }
    return render(request, "webhooks.html", hooks=hooks, deliveries=deliveries)
