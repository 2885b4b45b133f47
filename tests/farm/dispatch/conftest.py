"""An embedded control plane with its dispatcher, on PostgreSQL and the session's Ray."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sqlalchemy import select

from cluster.local import LocalRayHead, job_client
from farm.bootstrap import create_org_with_admin
from farm.db import Job
from farm.embedded import EmbeddedFarm
from farm.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JobFarm:
    settings: Settings
    farm: EmbeddedFarm
    clients: dict[str, httpx.Client]
    projects: dict[str, str]

    def submit(self, who: str = "a", **body: Any) -> dict[str, Any]:
        body.setdefault("kind", "debug.sleep")
        body.setdefault("project_id", self.projects[who])
        r = self.clients[who].post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str, who: str = "a") -> dict[str, Any]:
        return self.clients[who].get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 300, who: str = "a") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job = self.job(job_id, who)
        while time.monotonic() < deadline:
            if until(job):
                return job
            time.sleep(0.1)
            job = self.job(job_id, who)
        raise AssertionError(f"timed out waiting on job {job_id}: {job}")

    def wait_done(self, job_id: str, timeout: float = 300, who: str = "a") -> dict[str, Any]:
        return self.wait(job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout, who)

    def close(self) -> None:
        """Stop the control plane, then every Ray job its unfinished jobs still run.

        A test that failed or timed out mid-job would otherwise leave its runner
        rendering on the shared cluster, slowing every test after it.
        """
        with self.farm.db.session() as s:
            left = list(s.scalars(select(Job.ray_job_id).where(Job.ray_job_id.is_not(None), Job.finished_at.is_(None))))
        self.farm.stop()
        if left and self.settings.ray.dashboard_url:
            client = job_client(self.settings.ray.dashboard_url)
            for ray_job_id in left:
                try:
                    client.stop_job(ray_job_id)
                except Exception:  # already gone, or the cluster went first
                    pass

    def restart(self) -> None:
        """Stop the control plane (API + dispatcher) and start a fresh one on the same database."""
        self.farm.stop()
        self.farm = EmbeddedFarm(self.settings, start_ray=False).start()


def make_settings(tmp_path: Path, db_url: str, ray: LocalRayHead, **dispatch: Any) -> Settings:
    return Settings(
        home=tmp_path / "home", db={"url": db_url}, api={"port": free_port()},
        ray={"dashboard_url": ray.dashboard_url, "address": ray.address},
        dispatch={"poll_s": 0.2, "lease_ttl_s": 3, **dispatch},
    )


def start_job_farm(settings: Settings, start: bool = True) -> JobFarm:
    farm = EmbeddedFarm(settings, start_ray=False)
    farm.prepare()
    clients, projects = {}, {}
    for org in ("a", "b"):
        _, key = create_org_with_admin(farm.db, f"org-{org}")
        clients[org] = httpx.Client(base_url=settings.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if start:
        farm.start()
        for org, c in clients.items():
            projects[org] = c.post("/v1/projects", json={"name": f"p-{org}"}).json()["id"]
    return JobFarm(settings, farm, clients, projects)


@pytest.fixture
def job_farm(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> Iterator[JobFarm]:
    jf = start_job_farm(make_settings(tmp_path, postgres_url, ray_cluster))
    yield jf
    jf.close()
