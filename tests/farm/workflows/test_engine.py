"""Runs advanced by the real control plane, their steps run as child jobs on the real Ray cluster.

All runs start together (see conftest.runs); each test follows its own.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from cluster.local import job_client
from farm.db import Job
from farm.db.models import WebhookDelivery
from tests.farm.dispatch.conftest import JobFarm
from tests.farm.workflows.conftest import CANCEL_GRACE_S, steps, view, wait_run


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ray_job_ended(jf: JobFarm, job_id: str, within_s: float = 60) -> str:
    """The Ray job's final status, once it has one (a runner that settled its job exits moments later)."""
    with jf.farm.db.session() as s:
        ray_job_id = s.get(Job, job_id).ray_job_id
    client = job_client(jf.settings.ray.dashboard_url or "")
    deadline = time.monotonic() + within_s
    while (status := client.get_job_status(ray_job_id).value) in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
    return str(status)


def events_of(jf: JobFarm, run_id: str) -> list[str]:
    with jf.farm.db.session() as s:
        rows = s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at))
        return [d.event_type for d in rows if d.payload["data"]["id"] == run_id]


def test_a_killed_runner_is_the_dispatchers_retry_not_the_steps(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run_id = wf_farm, runs["killed"]["id"]
    v = wait_run(jf, run_id, lambda v: (steps(v)["long"]["counts"] or {}).get("succeeded", 0) >= 1)
    child_id = steps(v)["long"]["job_id"]
    with jf.farm.db.session() as s:
        pid = s.get(Job, child_id).runner_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    done = wait_run(jf, run_id)
    long = steps(done)["long"]
    assert done["state"] == "succeeded" and long["state"] == "succeeded"
    assert long["attempts"] == 1 and long["job_ids"] == [child_id]  # the same child job, started again by the dispatcher
    assert jf.job(child_id)["attempts"] == 2 and long["counts"] == {"total": 20, "succeeded": 20, "failed": 0}


def test_cancelling_a_run_mid_step_cancels_its_job_and_skips_the_rest(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run_id = wf_farm, runs["cancel"]["id"]
    wait_run(jf, run_id, lambda v: (steps(v)["long"]["counts"] or {}).get("succeeded", 0) >= 2)
    r = jf.clients["a"].post(f"/v1/workflow-runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancel_requested", r.text
    done = wait_run(jf, run_id)
    s = steps(done)
    assert done["state"] == "cancelled"
    assert s["long"]["state"] == "cancelled" and s["next"]["state"] == "skipped"
    child = jf.job(s["long"]["job_id"])
    assert child["state"] == "cancelled" and 2 <= child["counts"]["succeeded"] < 120
    assert ray_job_ended(jf, child["id"]) in ("STOPPED", "SUCCEEDED", "FAILED")
    assert jf.clients["a"].post(f"/v1/workflow-runs/{run_id}/cancel").status_code == 409
    assert events_of(jf, run_id)[-1] == "workflow.cancelled"


def test_a_step_past_its_timeout_is_stopped_on_ray_and_fails(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run_id = wf_farm, runs["timeout"]["id"]
    done = wait_run(jf, run_id)
    s = steps(done)
    assert done["state"] == "failed" and s["never"]["state"] == "skipped"
    assert s["sleepy"]["state"] == "failed" and s["sleepy"]["reason"].startswith("timed out after 10 s (job ")
    child = jf.job(s["sleepy"]["job_id"])
    assert child["state"] == "cancelled"
    ran = (at(child["finished_at"]) - at(child["started_at"])).total_seconds()
    assert 10 <= ran < 10 + CANCEL_GRACE_S + 20, ran  # stopped after its timeout and the grace period, not after the 60 s it asked for
    assert ray_job_ended(jf, child["id"]) in ("STOPPED", "FAILED", "SUCCEEDED")


def test_a_failing_step_backs_off_retries_then_fails_the_run_and_a_retry_reruns_only_what_failed(
        wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run_id = wf_farm, runs["retry"]["id"]
    done = wait_run(jf, run_id)
    s = steps(done)
    (backoff,) = s["flaky"]["retries"]  # the first attempt failed, the second waited 3 s (no jitter)
    assert backoff["after_attempt"] == 1 and "item 0 failed" in backoff["reason"]
    assert backoff["backoff_s"] == 3.0 and at(backoff["not_before"]) > at(backoff["failed_at"]) - timedelta(seconds=1)
    assert done["state"] == "failed" and done["error"].startswith("step 'flaky' failed: job ")
    assert s["ok"]["state"] == "succeeded" and s["flaky"]["state"] == "failed" and s["after"]["state"] == "skipped"
    assert s["flaky"]["attempts"] == 2 and len(s["flaky"]["job_ids"]) == 2
    assert s["flaky"]["reason"].endswith("(after 2 attempts)") and s["after"]["reason"] == "the run failed: step 'flaky' failed"
    assert s["after"]["job_ids"] == []
    first, second = (jf.job(j) for j in s["flaky"]["job_ids"])
    assert first["state"] == second["state"] == "failed"
    assert at(second["created_at"]) >= at(backoff["not_before"]) > at(first["finished_at"])  # the next attempt waited for its backoff
    with jf.farm.db.session() as db:
        children = {j.id: j.parent_id for j in db.scalars(select(Job).where(Job.parent_id == run_id))}
    assert set(children) == {*s["ok"]["job_ids"], *s["flaky"]["job_ids"]}

    again = jf.clients["a"].post(f"/v1/workflow-runs/{run_id}/retry")
    assert again.status_code == 200, again.text
    assert {x["id"]: x["state"] for x in again.json()["steps"]} == {"ok": "succeeded", "flaky": "pending", "after": "pending"}
    redone = wait_run(jf, run_id, lambda v: v["state"] == "failed" and len(steps(v)["flaky"]["job_ids"]) == 4)
    r = steps(redone)
    assert r["ok"]["job_ids"] == s["ok"]["job_ids"] and r["ok"]["outputs"] == s["ok"]["outputs"]  # kept, not re-run
    assert r["flaky"]["job_ids"][:2] == s["flaky"]["job_ids"] and r["flaky"]["attempts"] == 2  # two new child jobs
    assert [b["after_attempt"] for b in r["flaky"]["retries"]] == [1, 1]  # one backoff in each round
    assert r["after"]["state"] == "skipped"
    assert events_of(jf, run_id) == ["workflow.started", "workflow.failed", "workflow.started", "workflow.failed"]


def test_conditions_and_continue_on_failure(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, run = wf_farm, runs["branches"]
    done = wait_run(jf, run["id"])
    s = steps(done)
    assert done["state"] == "succeeded", done
    assert s["work"]["state"] == "succeeded" and s["work"]["counts"] == {"total": 2, "succeeded": 0, "failed": 2}
    assert s["fixup"]["state"] == "succeeded"  # when: steps.work.failed_items > 0
    assert s["notify"]["state"] == "skipped" and s["notify"]["reason"] == "condition is false: params.notify"
    assert s["optional"]["state"] == "failed" and s["needs_optional"]["state"] == "skipped"
    assert done["workflow_id"] == run["template"]["id"]
    body = {"project_id": jf.projects["a"]}
    replay = jf.clients["a"].post(f"/v1/workflows/{run['template']['id']}/runs", json=body, headers={"Idempotency-Key": "branches-1"})
    assert replay.status_code == 200 and replay.json()["id"] == run["id"]
    other = jf.clients["a"].post(f"/v1/workflows/{run['template']['id']}/runs", json={**body, "params": {"notify": True}},
                                 headers={"Idempotency-Key": "branches-1"})
    assert other.status_code == 409, other.text
    assert events_of(jf, run["id"]) == ["workflow.started", "workflow.succeeded"]


def test_another_org_sees_none_of_it(wf_farm: JobFarm, runs: dict[str, Any]) -> None:
    jf, b = wf_farm, wf_farm.clients["b"]
    run_id, template_id = runs["branches"]["id"], runs["branches"]["template"]["id"]
    for method, path in (("GET", f"/v1/workflow-runs/{run_id}"), ("POST", f"/v1/workflow-runs/{run_id}/cancel"),
                         ("POST", f"/v1/workflow-runs/{run_id}/retry"), ("GET", f"/v1/workflows/{template_id}"),
                         ("GET", f"/v1/jobs/{run_id}")):
        assert b.request(method, path).status_code == 404, path
    assert b.post(f"/v1/workflows/{template_id}/runs", json={"project_id": jf.projects["b"]}).status_code == 404
    assert b.get("/v1/workflows").json()["data"] == []
    assert view(jf, run_id)["state"] in ("queued", "running", "succeeded")
