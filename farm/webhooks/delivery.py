"""The delivery worker: sends due outbox rows, signed, and retries failures with backoff.

It runs as a thread in each control-plane process. A round claims a few due
deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two control planes
never claim the same row) by pushing their ``next_attempt_at`` past the time
a send can take, commits, sends them, then records each attempt. A process
that dies mid-send leaves its claims to be picked up again when that time
has passed: a delivery is sent at least once, and receivers deduplicate on
the event id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from farm.db import Database
from farm.db.models import Webhook, WebhookAttempt, WebhookDelivery, utcnow
from farm.settings import WebhookSettings
from farm.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from farm.webhooks.targets import TargetRefused, resolve

log = logging.getLogger("farm.webhooks")
USER_AGENT = "StoryCore-Farm-Webhooks/1"


@dataclass(frozen=True)
class Claim:
    """What one send needs, copied out of the session that claimed it."""

    delivery_id: str
    attempt: int
    webhook_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_s(attempt: int, settings: WebhookSettings) -> float:
    """Wait after failed attempt number ``attempt`` (1-based): base, 2×base, 4×base … capped."""
    return min(settings.retry_base_s * 2 ** (attempt - 1), settings.retry_max_s)


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class DeliveryWorker:
    def __init__(self, db: Database, settings: WebhookSettings) -> None:
        self.db = db
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="farm-webhook-send")
        self._client = httpx.Client(timeout=settings.timeout_s, follow_redirects=False, trust_env=False)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="farm-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_s * 2 + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            try:
                while self.tick() == self.settings.concurrency and not self._stop.is_set():
                    pass  # a full round: more may be due
            except Exception:  # keep delivering through transient errors
                log.exception("webhook delivery round failed")

    # -- one round ------------------------------------------------------------------

    def tick(self) -> int:
        """Send every claimed due delivery once; returns how many were claimed."""
        claims = self.claim()
        for claim, outcome in zip(claims, self._pool.map(self.send, claims)):
            self.record(claim, outcome)
        return len(claims)

    def claim(self) -> list[Claim]:
        now = utcnow()
        hold = timedelta(seconds=self.settings.timeout_s * 2 + 30)  # longer than a round of sends
        with self.db.session() as s:
            stmt = (
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(self.settings.concurrency)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
            claims = []
            for delivery, hook in s.execute(stmt).all():
                if hook.deleted_at is not None:
                    delivery.state, delivery.last_error = "failed", "webhook deleted"
                    continue
                delivery.next_attempt_at = now + hold
                claims.append(Claim(
                    delivery_id=delivery.id, attempt=delivery.attempts + 1, webhook_id=hook.id, url=hook.url,
                    secret=hook.secret, event_id=delivery.event_id, event_type=delivery.event_type, payload=delivery.payload,
                ))
            s.commit()
        return claims

    def send(self, claim: Claim) -> Outcome:
        """One POST to the checked address; never raises, never follows redirects."""
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            target = resolve(claim.url, self.settings)
            body = body_of(claim.payload)
            ts = int(time.time())
            headers = {
                "Host": target.host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Farm-Webhook-Id": claim.webhook_id,
                "X-Farm-Event-Id": claim.event_id,
                "X-Farm-Event-Type": claim.event_type,
                "X-Farm-Delivery-Id": claim.delivery_id,
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: sign(claim.secret, ts, body),
            }
            request = self._client.build_request("POST", target.url, content=body, headers=headers, extensions=target.extensions)
            response = self._client.send(request, stream=True)  # the status is all we need; the body is never read
            response.close()
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TargetRefused as exc:
            error = f"refused: {exc}"
        except OSError as exc:
            error = f"could not resolve host: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # a bug must cost one attempt, not stall the delivery
            log.exception("webhook delivery %s: unexpected error", claim.delivery_id)
            error = f"internal error: {type(exc).__name__}"
        return Outcome(status_code=status, error=error, duration_ms=int((time.perf_counter() - started) * 1000))

    def record(self, claim: Claim, outcome: Outcome) -> None:
        """Log the attempt and settle the delivery: delivered, retried later, or failed for good."""
        with self.db.session() as s:
            delivery = s.get(WebhookDelivery, claim.delivery_id, with_for_update=True)
            if delivery is None or delivery.state != "pending" or delivery.attempts != claim.attempt - 1:
                return  # deleted, or settled elsewhere after our claim ran out
            now = utcnow()
            s.add(WebhookAttempt(delivery_id=delivery.id, attempt=claim.attempt, status_code=outcome.status_code,
                                 error=outcome.error, duration_ms=outcome.duration_ms, at=now))
            delivery.attempts = claim.attempt
            delivery.last_status = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.ok:
                delivery.state, delivery.delivered_at = "succeeded", now
            elif claim.attempt >= self.settings.max_attempts:
                delivery.state = "failed"
                log.warning("webhook delivery %s failed after %d attempts: %s", delivery.id, claim.attempt, outcome.error)
            else:
                delivery.next_attempt_at = now + timedelta(seconds=backoff_s(claim.attempt, self.settings))
            try:
                s.commit()
            except IntegrityError:  # the same attempt recorded by another worker
                s.rollback()
