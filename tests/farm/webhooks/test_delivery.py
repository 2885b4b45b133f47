"""The delivery worker against a real receiver on 127.0.0.1: signed, retried with backoff, logged."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from farm.db.models import WebhookDelivery
from farm.settings import WebhookSettings
from farm.webhooks.delivery import DeliveryWorker, backoff_s
from farm.webhooks.outbox import enqueue
from farm.webhooks.signing import verify
from tests.farm.webhooks.conftest import FAST, Orgs
from tests.farm.webhooks.receiver import Receiver


def _event(orgs: Orgs, event_type: str = "batch.completed", **data: object) -> None:
    with orgs.db.session() as s:
        enqueue(s, orgs.a, event_type, {"id": "batch_1", **data})
        s.commit()


def _delivery(orgs: Orgs) -> WebhookDelivery:
    with orgs.db.session() as s:
        return s.scalars(select(WebhookDelivery)).one()


def _tick_until_due(worker: DeliveryWorker, limit_s: float = 30) -> int:
    """Tick until something is claimed: the next attempt waits out its backoff."""
    deadline = time.monotonic() + limit_s
    while (n := worker.tick()) == 0:
        assert time.monotonic() < deadline, "nothing became due"
        time.sleep(0.02)
    return n


def test_failed_attempt_is_retried_after_backoff_then_delivered_signed(orgs: Orgs) -> None:
    with Receiver(script=[500]) as rx:
        hook_id, secret = orgs.webhook(rx.url("/in?src=farm"))
        _event(orgs, status="completed")
        worker = DeliveryWorker(orgs.db, FAST)
        try:
            assert worker.tick() == 1
            first = _delivery(orgs)
            assert (first.state, first.attempts, first.last_status, first.last_error) == ("pending", 1, 500, "HTTP 500")
            [a1] = first.attempt_log
            assert first.next_attempt_at == a1.at + timedelta(seconds=FAST.retry_base_s)
            assert _tick_until_due(worker) == 1
            assert worker.tick() == 0  # delivered: nothing left
        finally:
            worker.stop()
        requests = rx.wait_for(2)

    done = _delivery(orgs)
    assert (done.state, done.attempts, done.last_status, done.last_error) == ("succeeded", 2, 200, None)
    a1, a2 = done.attempt_log
    assert (a1.attempt, a1.status_code, a2.attempt, a2.status_code) == (1, 500, 2, 200)
    assert a2.at - a1.at >= timedelta(seconds=FAST.retry_base_s) and done.delivered_at == a2.at
    for req in requests:
        assert req.path == "/in?src=farm"
        assert req.headers["content-type"] == "application/json"
        assert req.headers["x-farm-webhook-id"] == hook_id
        assert req.headers["x-farm-event-id"] == done.event_id == req.json()["id"]
        assert req.headers["x-farm-event-type"] == "batch.completed"
        assert req.headers["x-farm-delivery-id"] == done.id
        ts = req.headers["x-farm-webhook-timestamp"]
        assert req.headers["x-farm-signature"].startswith(f"t={ts},v1=")
        assert verify(secret, req.headers["x-farm-signature"], req.body)
        assert not verify(secret, req.headers["x-farm-signature"], req.body + b" ")
    assert requests[0].body == requests[1].body  # same event, same bytes; only the timestamp moves
    assert requests[0].json()["data"] == {"id": "batch_1", "status": "completed"}


def test_a_named_host_is_reached_at_its_checked_address_with_its_own_host_header(orgs: Orgs) -> None:
    if socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    with Receiver() as rx:
        orgs.webhook(f"http://localhost:{rx.port}/hook")
        _event(orgs)
        worker = DeliveryWorker(orgs.db, FAST)
        try:
            assert worker.tick() == 1
        finally:
            worker.stop()
        [req] = rx.wait_for(1)
    assert req.headers["host"] == f"localhost:{rx.port}"
    assert _delivery(orgs).state == "succeeded"


def test_gives_up_after_max_attempts(orgs: Orgs) -> None:
    settings = FAST.model_copy(update={"retry_base_s": 0.01, "max_attempts": 3})
    with Receiver(script=[500, 503, 502, 200]) as rx:
        orgs.webhook(rx.url())
        _event(orgs)
        worker = DeliveryWorker(orgs.db, settings)
        try:
            for _ in range(3):
                _tick_until_due(worker)
            assert worker.tick() == 0
        finally:
            worker.stop()
        assert len(rx.requests) == 3
    d = _delivery(orgs)
    assert (d.state, d.attempts, d.last_status) == ("failed", 3, 502)
    assert [a.status_code for a in d.attempt_log] == [500, 503, 502]


def test_redirects_are_failures_and_not_followed(orgs: Orgs) -> None:
    with Receiver(script=[302]) as rx:
        orgs.webhook(rx.url())
        _event(orgs)
        worker = DeliveryWorker(orgs.db, FAST)
        try:
            worker.tick()
        finally:
            worker.stop()
        assert [r.path for r in rx.requests] == ["/hook"]
    d = _delivery(orgs)
    assert (d.state, d.last_status, d.last_error) == ("pending", 302, "HTTP 302")


def test_a_target_refused_at_delivery_time_is_never_contacted(orgs: Orgs) -> None:
    """Allowed when created, refused now (settings changed): the check runs again before each send."""
    strict = WebhookSettings(allow_private=False, max_attempts=1)
    with Receiver() as rx:
        orgs.webhook(rx.url())
        _event(orgs)
        worker = DeliveryWorker(orgs.db, strict)
        try:
            assert worker.tick() == 1
        finally:
            worker.stop()
        assert rx.requests == []
    d = _delivery(orgs)
    assert (d.state, d.last_status) == ("failed", None)
    assert d.last_error == "refused: loopback/private addresses are not allowed"
    assert [a.error for a in d.attempt_log] == [d.last_error]


def test_an_unreachable_receiver_is_a_recorded_failure(orgs: Orgs) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        orgs.webhook(f"http://127.0.0.1:{port}/hook")
        _event(orgs)
        worker = DeliveryWorker(orgs.db, FAST)
        try:
            worker.tick()
        finally:
            worker.stop()
    d = _delivery(orgs)
    assert d.state == "pending" and d.last_status is None and d.last_error.startswith("ConnectError")
    assert d.attempt_log[0].status_code is None


def test_backoff_doubles_and_is_capped() -> None:
    settings = WebhookSettings(retry_base_s=1, retry_max_s=30)
    assert [backoff_s(n, settings) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_two_workers_never_send_the_same_delivery(postgres_url: str) -> None:
    """Two control planes polling one PostgreSQL: SKIP LOCKED claims split the work."""
    from farm.accounts import create_org
    from farm.db import Database
    from farm.webhooks.registry import create_webhook

    db = Database(postgres_url)
    db.upgrade()
    with Receiver() as rx:
        with db.session() as s:
            org = create_org(s, "org").id
            create_webhook(s, org, rx.url(), [], FAST)
            s.commit()
            for i in range(24):
                enqueue(s, org, "job.succeeded", {"id": f"job_{i}"})
            s.commit()
        workers = [DeliveryWorker(db, FAST) for _ in range(2)]

        def drain(worker: DeliveryWorker) -> None:
            while worker.tick():
                pass

        threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in workers:
            w.stop()
        ids = [r.headers["x-farm-delivery-id"] for r in rx.wait_for(24)]
    assert len(ids) == len(set(ids)) == 24
    with db.session() as s:
        assert set(s.scalars(select(WebhookDelivery.state))) == {"succeeded"}
    db.dispose()
