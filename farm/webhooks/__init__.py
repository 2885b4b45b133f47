"""Webhooks: an org's endpoints receive its job and batch events, signed, retried, logged.

``outbox.enqueue`` queues an event in the caller's transaction; the
``delivery.DeliveryWorker`` thread sends it; ``signing`` is the scheme a
receiver checks; ``targets`` decides where deliveries may go.
"""

from farm.webhooks.outbox import enqueue
from farm.webhooks.signing import sign, verify

__all__ = ["enqueue", "sign", "verify"]
