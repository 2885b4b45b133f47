"""The diffusion deployment on Serve: dynamic batches hold only compatible jobs; seeds survive batching."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.fixtures.serve_apps import SD, ServeApps

pytestmark = pytest.mark.slow


async def _concurrently(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=300) as client:
        return await asyncio.gather(*(client.post(url, json=body) for body in bodies))


def test_batches_group_only_compatible_requests(serve_apps: ServeApps) -> None:
    url = serve_apps.app_url(SD) + "/generate"
    bodies = (
        [{"prompt": f"small {i}", "steps": 3, "seed": i} for i in range(6)]
        + [{"prompt": f"large {i}", "steps": 3, "width": 128, "height": 128, "seed": i} for i in range(4)]
        + [{"prompt": f"slow {i}", "steps": 5, "seed": i} for i in range(2)]
    )
    kinds = [b["prompt"].split()[0] for b in bodies]
    group_size = Counter(kinds)
    for _ in range(3):  # batch composition depends on arrival; a few rounds make batching certain to show
        responses = asyncio.run(_concurrently(url, bodies))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
        sizes = [r.json()["data"][0]["batch_size"] for r in responses]
        # A job only ever shares a pipeline call with jobs of the same size and steps.
        assert all(size <= group_size[kind] for size, kind in zip(sizes, kinds)), list(zip(kinds, sizes))
        if max(sizes) > 1:
            break
    assert max(sizes) > 1, "concurrent compatible requests were never batched"

    # The batched image for ("small 2", seed 2) equals the same request made alone.
    alone = httpx.post(url, json=bodies[2], timeout=120).json()["data"][0]
    assert alone["batch_size"] == 1
    assert alone["b64_png"] == responses[2].json()["data"][0]["b64_png"]


def test_health_and_bad_input_answer_400_naming_the_field(serve_apps: ServeApps) -> None:
    health = httpx.get(serve_apps.app_url(SD) + "/health", timeout=30).json()
    assert health["model"] == SD and health["defaults"]["width"] == 64
    bad = httpx.post(serve_apps.app_url(SD) + "/generate", json={"prompt": "x", "width": 4096}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "size"
    typo = httpx.post(serve_apps.app_url(SD) + "/generate", json={"prompt": "x", "stepz": 3}, timeout=30)
    assert typo.status_code == 400 and typo.json()["error"]["param"] == "stepz"
