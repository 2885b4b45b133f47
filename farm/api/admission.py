"""Admission: the control plane works on at most N requests at once; the rest wait their turn.

Why: a sync route takes a pooled database connection in its first dependency
(the API key lookup) and keeps it across the threadpool hops that follow.
With more requests in flight than pooled connections, every worker thread can
end up waiting for a connection that only a request waiting for a thread can
give back, until SQLAlchemy's pool timeout breaks the deadlock with an error.
Bounding the requests in flight below the pool keeps every admitted request
able to finish; the others wait on the event loop, holding nothing. An event
stream holds its turn only until it starts streaming, and a request that
waits past ``wait_s`` gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm.api.errors import error_json

ALWAYS = frozenset({"/healthz"})  # liveness must answer while the farm is busy
RETRY_AFTER_S = 1


def _streams(message: Message) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(b"text/event-stream") for k, v in message.get("headers", []))


class AdmissionGate:
    def __init__(self, app: ASGIApp, *, limit: int, wait_s: float) -> None:
        self.app = app
        self.limit = limit
        self.wait_s = wait_s
        self._turns = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS:
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(self._turns.acquire(), self.wait_s)
        except TimeoutError:
            busy = error_json(503, "unavailable", f"the farm is working on {self.limit} requests; retry shortly",
                              {"Retry-After": str(RETRY_AFTER_S)})
            await busy(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._turns.release()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and _streams(message):
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            release()  # after the route's dependencies closed: its database connection is back in the pool
