"""The outbox: deliveries are written with the change they report, for the webhooks that want them."""

from __future__ import annotations

from sqlalchemy import select

from farm.db.models import Webhook, WebhookDelivery
from farm.webhooks.outbox import enqueue, subscribed
from farm.webhooks.registry import delete_webhook
from tests.farm.webhooks.conftest import Orgs


def _deliveries(orgs: Orgs) -> list[WebhookDelivery]:
    with orgs.db.session() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.webhook_id)))


def test_one_delivery_per_subscribed_webhook_of_the_org(orgs: Orgs) -> None:
    every, _ = orgs.webhook("https://a.example.com/all")
    jobs_only, _ = orgs.webhook("https://a.example.com/jobs", event_types=["job.*"])
    orgs.webhook("https://a.example.com/batches", event_types=["batch.completed"])
    orgs.webhook("https://b.example.com/all", org=orgs.b)
    with orgs.db.session() as s:
        enqueue(s, orgs.a, "job.succeeded", {"id": "job_1", "n": 1})
        s.commit()
    rows = _deliveries(orgs)
    assert sorted(r.webhook_id for r in rows) == sorted([every, jobs_only])
    assert {r.org_id for r in rows} == {orgs.a} and {r.state for r in rows} == {"pending"}
    event = rows[0].payload
    assert set(event) == {"id", "type", "created", "data"} and event["type"] == "job.succeeded"
    assert event["data"] == {"id": "job_1", "n": 1} and isinstance(event["created"], int)
    assert rows[0].payload == rows[1].payload and rows[0].event_id == event["id"]  # one event, one id


def test_nothing_is_queued_when_the_transaction_rolls_back(orgs: Orgs) -> None:
    orgs.webhook("https://a.example.com/all")
    with orgs.db.session() as s:
        enqueue(s, orgs.a, "job.running", {"id": "job_1"})
        s.rollback()
    assert _deliveries(orgs) == []


def test_deleted_webhooks_get_nothing_and_lose_what_was_pending(orgs: Orgs) -> None:
    hook_id, _ = orgs.webhook("https://a.example.com/all")
    with orgs.db.session() as s:
        enqueue(s, orgs.a, "job.running", {"id": "job_1"})
        delete_webhook(s, s.get(Webhook, hook_id))
        s.commit()
        enqueue(s, orgs.a, "job.succeeded", {"id": "job_1"})
        s.commit()
    [row] = _deliveries(orgs)
    assert row.event_type == "job.running" and row.state == "failed" and row.last_error == "webhook deleted"


def test_subscription_patterns() -> None:
    assert subscribed([], "batch.completed")
    assert subscribed(["job.*"], "job.cancel_requested") and not subscribed(["job.*"], "jobs.x")
    assert subscribed(["job.failed", "batch.*"], "batch.failed") and not subscribed(["job.failed"], "job.succeeded")
