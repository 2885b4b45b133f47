"""Runners ride out a restart of the farm's database and of its object store (both at once, to keep it short).

The farm here runs on a PostgreSQL cluster and an S3-protocol server of its
own (the session's are shared by every test), which the tests stop and start
again on the same port with their data kept, while real jobs run on Ray.
While the database is down the API answers 503 with ``Retry-After`` (not a
500, not a hang); runners wait it out and finish in the same attempt, with
every item recorded once. An object store that comes back within
``s3.outage_s`` is waited for; one that stays away fails the job's items with
a message naming it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr
from sqlalchemy import func, select

from cluster.local import LocalRayHead, job_client
from farm.db import Asset, JobItem
from pipelines.stages.media.synthetic import make_video
from tests.farm.dispatch.conftest import JobFarm, free_port, make_settings, start_job_farm
from tests.fixtures.postgres import PostgresServer, create_database
from tests.fixtures.s3 import unique_bucket

OUTAGE_S = 15  # how long each service stays down
SHOTS_SPEC = {"chunk_size": 16, "clip_preset": "ultrafast", "keyframes_per_shot": 1}


class RestartableS3:
    """moto's S3 server on a fixed port; its buckets live in this process, so a restart keeps them."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass
class OutageFarm:
    jf: JobFarm
    postgres: PostgresServer
    s3: RestartableS3


@pytest.fixture(scope="module")
def outage_farm(ray_cluster: LocalRayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageFarm]:
    postgres = PostgresServer().start()
    s3 = RestartableS3()
    s3.start()
    settings = make_settings(tmp_path_factory.mktemp("outages"), create_database(postgres.url), ray_cluster)
    settings.storage.backend = "s3"
    settings.s3.endpoint, settings.s3.access_key = s3.endpoint, "testing"
    settings.s3.secret_key = SecretStr("testing")
    settings.s3.bucket, settings.s3.region = unique_bucket(), "us-east-1"
    jf = start_job_farm(settings)
    try:
        yield OutageFarm(jf, postgres, s3)
    finally:
        jf.close()
        s3.stop()
        postgres.remove()


def upload(jf: JobFarm, path: Path) -> str:
    with path.open("rb") as fh:
        r = jf.clients["a"].post(f"/v1/projects/{jf.projects['a']}/assets", files={"file": (path.name, fh)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def videos(jf: JobFarm, folder: Path, count: int, seed: int) -> list[str]:
    return [upload(jf, make_video(folder / f"take-{seed}-{i}.mp4", (16, 16, 16), size=(96, 64), seed=seed + i).path)
            for i in range(count)]


def wait_for(what: str, check: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_database_and_object_store_restart_mid_job(outage_farm: OutageFarm, tmp_path: Path) -> None:
    """Both services go away for ``OUTAGE_S`` at once while a `debug.sleep` and a `video.shots` job run."""
    jf, postgres, s3 = outage_farm.jf, outage_farm.postgres, outage_farm.s3
    shots = jf.submit(kind="video.shots", spec={"asset_ids": videos(jf, tmp_path, 2, seed=0), **SHOTS_SPEC})
    sleep = jf.submit(spec={"items": 24, "delay_s": 0.5})
    wait_for("both jobs running and the sleep job part done",
             lambda: jf.job(shots["id"])["state"] == "running" and jf.job(sleep["id"])["counts"]["succeeded"] >= 2)

    postgres.stop()
    s3.stop()
    down_at = time.monotonic()
    try:
        # The API says "come back later" at once, for reads and for writes alike.
        with httpx.Client(base_url=jf.settings.base_url, headers=jf.clients["a"].headers, timeout=10) as client:
            for method, path, body in (("GET", f"/v1/jobs/{sleep['id']}", None),
                                       ("POST", "/v1/jobs", {"kind": "debug.sleep", "project_id": jf.projects["a"]})):
                r = client.request(method, path, json=body)
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                assert r.json()["error"]["type"] == "unavailable" and r.headers["Retry-After"].isdigit()
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    finally:
        s3.start()
        postgres.start()

    for job in (sleep, shots):
        done = jf.wait_done(job["id"], timeout=240)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1, f"the runner was restarted instead of waiting out the outage: {done}"
    assert jf.job(sleep["id"])["counts"] == {"total": 24, "succeeded": 24, "failed": 0}
    with jf.farm.db.session() as s:
        rows = s.execute(select(JobItem.idx, func.count()).where(JobItem.job_id == sleep["id"]).group_by(JobItem.idx)).all()
    assert sorted(idx for idx, _ in rows) == list(range(24)) and {n for _, n in rows} == {1}

    done = jf.job(shots["id"])
    assert done["counts"] == {"total": 2, "succeeded": 2, "failed": 0}
    with jf.farm.db.session() as s:  # every result the job recorded is in the store, byte for byte
        made = s.execute(select(Asset.id, Asset.sha256).where(Asset.id.in_(done["result_asset_ids"]))).all()
    assert made
    for asset_id, sha256 in made:
        r = jf.clients["a"].get(f"/v1/assets/{asset_id}/content")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha256


def test_object_store_gone_for_good_fails_the_job_naming_it(outage_farm: OutageFarm, tmp_path: Path) -> None:
    jf, s3 = outage_farm.jf, outage_farm.s3
    ids = videos(jf, tmp_path, 1, seed=20)
    jf.settings.s3.outage_s = 3
    jf.restart()  # runners of jobs started from now on wait 3 s for the store
    try:
        job = jf.submit(kind="video.shots", spec={"asset_ids": ids, **SHOTS_SPEC})
        wait_for("the job running", lambda: jf.job(job["id"])["state"] == "running")
        s3.stop()
        done = jf.wait_done(job["id"], timeout=240)
    finally:
        s3.start()
        jf.settings.s3.outage_s = 60
    assert done["state"] == "failed", done
    assert f"object store s3://{jf.settings.s3.bucket} at {s3.endpoint} unreachable" in done["error"], done
    ray_jobs = job_client(jf.settings.ray.dashboard_url or "")
    wait_for("its Ray job to end", lambda: ray_jobs.get_job_status(done["ray_job_id"]).is_terminal(), timeout=60)
