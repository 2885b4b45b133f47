"""50 concurrent submissions with one Idempotency-Key create exactly one job."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from farm.db import Job
from tests.farm.dispatch.conftest import JobFarm


def test_concurrent_duplicates_create_one_job(job_farm: JobFarm) -> None:
    headers = {**job_farm.clients["a"].headers, "Idempotency-Key": "render-2026-11-24"}
    body = {"kind": "debug.sleep", "project_id": job_farm.projects["a"], "spec": {"items": 0}}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=job_farm.settings.base_url, headers=headers, timeout=60) as c:
            return await asyncio.gather(*(c.post("/v1/jobs", json=body) for _ in range(50)))

    responses = asyncio.run(burst())
    assert sorted({r.status_code for r in responses}) in ([200, 201], [201])
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    with job_farm.farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
