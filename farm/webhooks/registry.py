"""Registering and removing an org's webhooks; the secret is made here and shown once."""

from __future__ import annotations

import secrets

from sqlalchemy import update
from sqlalchemy.orm import Session

from farm.db.models import Webhook, WebhookDelivery, utcnow
from farm.ids import new_id
from farm.settings import WebhookSettings
from farm.webhooks.targets import check_url

SECRET_PREFIX = "whsec_"


def create_webhook(
    session: Session, org_id: str, url: str, event_types: list[str], settings: WebhookSettings, created_by: str | None = None
) -> Webhook:
    """Check the URL against the allowlist (TargetRefused if refused) and store a new webhook."""
    check_url(url, settings)
    hook = Webhook(
        id=new_id("wh"), org_id=org_id, url=url, secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        event_types=sorted(set(event_types)), created_by=created_by,
    )
    session.add(hook)
    return hook


def delete_webhook(session: Session, hook: Webhook) -> None:
    """Stop sending: mark the webhook deleted and fail what is still pending for it.

    The row stays (deliveries reference it) but is gone from the API.
    """
    hook.deleted_at = utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.state == "pending")
        .values(state="failed", last_error="webhook deleted")
    )
