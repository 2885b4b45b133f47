"""Overload beyond max_ongoing_requests + queue: fast 503 with Retry-After, no other 5xx, no hang.

``tiny-sd-tight`` takes one request at a time and queues one more. Eight
concurrent slow requests (100 steps each) through the front door: two are
rendered, the rest are refused by Serve's back-pressure and answered while the
first render is still running.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.fixtures.serve_apps import TIGHT, FrontDoor

pytestmark = pytest.mark.slow


async def _burst(door: FrontDoor, n: int) -> list[tuple[float, httpx.Response]]:
    body = {"model": TIGHT, "prompt": "a storm at sea", "response_format": "b64_json", "steps": 100}
    async with httpx.AsyncClient(base_url=door.url, headers=door.headers(), timeout=300) as client:

        async def one() -> tuple[float, httpx.Response]:
            response = await client.post("/v1/images/generations", json=body)
            return time.monotonic(), response

        return await asyncio.gather(*(one() for _ in range(n)))


def test_overload_is_refused_quickly_with_retry_after(front_door: FrontDoor) -> None:
    results = asyncio.run(_burst(front_door, 8))
    statuses = sorted(r.status_code for _, r in results)
    assert set(statuses) <= {200, 503}, statuses
    ok = [t for t, r in results if r.status_code == 200]
    refused = [(t, r) for t, r in results if r.status_code == 503]
    assert 1 <= len(ok) <= 3 and len(refused) >= 5, statuses
    for _, r in refused:
        error = r.json()["error"]
        assert error["type"] == "service_unavailable_error" and error["code"] == "overloaded"
        assert r.headers["retry-after"] == "2"  # the model's retry_after_s
    # Refusals do not wait for capacity: every one came back before the first render finished.
    assert max(t for t, _ in refused) < min(ok)

    # And the deployment is fine afterwards.
    again = httpx.post(f"{front_door.url}/v1/images/generations", headers=front_door.headers(), timeout=120,
                       json={"model": TIGHT, "prompt": "calm sea", "response_format": "b64_json", "steps": 1})
    assert again.status_code == 200, again.text
