"""The job system on a real Ray cluster and a real PostgreSQL: every job runs as a Ray Job."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from cluster.local import LocalRayHead, job_client
from farm.db import JobItem
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm


def sse_events(client: httpx.Client, job_id: str) -> list[dict[str, object]]:
    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def ray_status_settled(jf: JobFarm, ray_job_id: str) -> str:
    client = job_client(jf.settings.ray.dashboard_url or "")
    deadline = time.monotonic() + 30
    while (status := client.get_job_status(ray_job_id).value) in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def test_job_runs_on_ray_with_progress_stream(job_farm: JobFarm) -> None:
    job = job_farm.submit(spec={"items": 12, "delay_s": 0.05, "fail_rate": 0.25, "seed": 3})
    assert job["state"] == "queued" and job["counts"]["total"] == 12
    events = sse_events(job_farm.clients["a"], job["id"])  # streams until the job ends
    done = job_farm.job(job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert done["counts"]["succeeded"] + done["counts"]["failed"] == 12 and done["counts"]["failed"] > 0
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    progress = [e["succeeded"] + e["failed"] for e in events if e["type"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 12
    failed = next(e for e in events if e["type"] == "error")["failed_items"]
    assert len(failed) == done["counts"]["failed"] and "fail_rate" in failed[0]["error"]
    assert ray_status_settled(job_farm, done["ray_job_id"]) == "SUCCEEDED"


def test_job_fails_past_its_item_threshold_and_retries_failed_items(job_farm: JobFarm) -> None:
    job = job_farm.submit(spec={"items": 10, "delay_s": 0, "fail_rate": 0.5, "fail_job_above": 0.1, "seed": 1})
    done = job_farm.wait_done(job["id"])
    assert done["state"] == "failed" and "items failed" in done["error"]
    failed_before = done["counts"]["failed"]
    r = job_farm.clients["a"].post(f"/v1/jobs/{job['id']}/retry", json={"scope": "failed"})
    assert r.status_code == 200 and r.json()["state"] == "queued" and r.json()["counts"]["failed"] == 0
    again = job_farm.wait_done(job["id"])
    # the same seeded items fail again; the succeeded ones were not rerun
    assert again["counts"]["failed"] == failed_before and again["counts"]["succeeded"] == 10 - failed_before


def test_cancel_running_job_keeps_partial_results(job_farm: JobFarm) -> None:
    job = job_farm.submit(spec={"items": 400, "delay_s": 0.05})
    job_farm.wait(job["id"], lambda j: j["counts"]["succeeded"] >= 5)
    r = job_farm.clients["a"].post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancel_requested"
    done = job_farm.wait_done(job["id"])
    assert done["state"] == "cancelled"
    assert 5 <= done["counts"]["succeeded"] < 400
    assert ray_status_settled(job_farm, done["ray_job_id"]) in ("STOPPED", "SUCCEEDED")
    assert job_farm.clients["a"].post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_queued_job_is_immediate(job_farm: JobFarm) -> None:
    job_farm.settings.dispatch.max_running = 1
    blocker = job_farm.submit(spec={"items": 100, "delay_s": 0.05})
    job_farm.wait(blocker["id"], lambda j: j["state"] == "running")
    queued = job_farm.submit(spec={"items": 1})
    assert job_farm.clients["a"].post(f"/v1/jobs/{queued['id']}/cancel").json()["state"] == "cancelled"
    job_farm.clients["a"].post(f"/v1/jobs/{blocker['id']}/cancel")
    job_farm.wait_done(blocker["id"])
    assert job_farm.job(queued["id"])["ray_job_id"] is None  # never started


def test_killed_runner_is_retried_and_counts_each_item_once(job_farm: JobFarm) -> None:
    job = job_farm.submit(spec={"items": 40, "delay_s": 0.05})
    running = job_farm.wait(job["id"], lambda j: j["counts"]["succeeded"] >= 8)
    with job_farm.farm.db.session() as s:
        from farm.db import Job

        pid = s.get(Job, job["id"]).runner_pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    done = job_farm.wait_done(job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert done["counts"] == {"total": 40, "succeeded": 40, "failed": 0}
    assert done["ray_job_id"] != running["ray_job_id"]
    with job_farm.farm.db.session() as s:
        rows = s.scalar(select(func.count()).select_from(JobItem).where(JobItem.job_id == job["id"]))
        attempts = set(s.scalars(select(JobItem.attempt).where(JobItem.job_id == job["id"])))
    assert rows == 40 and attempts == {1, 2}  # resumed, not restarted


def test_runner_that_keeps_dying_fails_the_job(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> None:
    jf = start_job_farm(make_settings(tmp_path, postgres_url, ray_cluster, max_attempts=2))
    try:
        job = jf.submit(spec={"items": 1000, "delay_s": 0.05})
        for attempt in (1, 2):
            jf.wait(job["id"], lambda j, a=attempt: j["attempts"] == a and j["state"] == "running" and j["counts"]["succeeded"] > 0)
            with jf.farm.db.session() as s:
                from farm.db import Job

                deadline = time.monotonic() + 30
                while (pid := s.get(Job, job["id"]).runner_pid) is None and time.monotonic() < deadline:
                    s.expire_all()
                    time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        done = jf.wait_done(job["id"])
        assert done["state"] == "failed" and "after 2 attempts" in done["error"]
    finally:
        jf.close()


def test_control_plane_restart_mid_job(job_farm: JobFarm) -> None:
    job = job_farm.submit(spec={"items": 60, "delay_s": 0.05})
    job_farm.wait(job["id"], lambda j: j["counts"]["succeeded"] >= 5)
    job_farm.restart()
    done = job_farm.wait_done(job["id"])
    assert done["state"] == "succeeded" and done["attempts"] == 1  # re-attached, not rerun
    assert done["counts"]["succeeded"] == 60


def test_priority_order(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, postgres_url, ray_cluster, max_running=1, enabled=False)
    jf = start_job_farm(settings)
    try:
        ids = {p: jf.submit(priority=p, spec={"items": 0})["id"] for p in (10, 90, 50, 70)}
        settings.dispatch.enabled = True
        jf.restart()
        done = {p: jf.wait_done(i) for p, i in ids.items()}
        order = sorted(done, key=lambda p: done[p]["started_at"])
        assert order == [90, 70, 50, 10]
    finally:
        jf.close()


def test_fair_share_between_orgs(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, postgres_url, ray_cluster, max_running=1, enabled=False)
    jf = start_job_farm(settings)
    try:
        flood = [jf.submit("a", spec={"items": 0})["id"] for _ in range(6)]
        lone = jf.submit("b", spec={"items": 0})["id"]  # submitted last
        settings.dispatch.enabled = True
        jf.restart()
        b = jf.wait_done(lone, who="b")
        a_started = [jf.wait_done(i)["started_at"] for i in flood]
        position = sorted([*a_started, b["started_at"]]).index(b["started_at"])
        assert position <= 1, f"org b's only job started {position + 1}th behind org a's flood"
    finally:
        jf.close()
