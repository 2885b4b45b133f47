"""Webhook signatures: Stripe's scheme, so receivers can check a delivery with ten lines.

Every delivery carries::

    X-Farm-Webhook-Timestamp: 1767225600
    X-Farm-Signature: t=1767225600,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``v1`` is the hex HMAC-SHA256 of ``f"{t}.{raw_body}"`` keyed with the whole
webhook secret (``whsec_…``, UTF-8). A receiver recomputes it over the raw
request body (before any JSON parsing), compares in constant time, and
rejects timestamps far from its clock so a captured request cannot be
replayed later::

    import hashlib, hmac, time
    def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
        parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
        t = next((v for k, v in parts if k == "t"), "")
        if not t.isdecimal() or abs(time.time() - int(t)) > tolerance_s:
            return False
        mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return any(k == "v1" and hmac.compare_digest(mac.encode(), v.encode()) for k, v in parts)

The event id (``X-Farm-Event-Id``, also the body's ``id``) is the same on
every retry: receivers deduplicate on it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Farm-Signature"
TIMESTAMP_HEADER = "X-Farm-Webhook-Timestamp"


def _mac(secret: str, ts: int | str, body: bytes | str) -> str:
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()


def sign(secret: str, ts: int, body: bytes | str) -> str:
    """The X-Farm-Signature header value for a body sent at unix time ``ts``."""
    return f"t={ts},v1={_mac(secret, ts, body)}"


def verify(secret: str, header: str, body: bytes | str, tolerance_s: float = 300, now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within tolerance.

    Several ``v1=`` entries are accepted (any may match), leaving room to
    sign with two secrets while one is rotated.
    """
    parts = [p.strip().split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdecimal():
        return False
    ts = int(stamps[0])
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = _mac(secret, ts, body)
    return any(k == "v1" and hmac.compare_digest(expected.encode(), v.encode()) for k, v in parts)
