"""One control plane with its dispatcher on the session's PostgreSQL and Ray, shared by the workflow tests.

Every run these tests watch is started up front (`runs`), so the runs'
child jobs share the cluster at once instead of one test after another.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.local import LocalRayHead
from pipelines.stages.media.synthetic import make_video
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.fixtures.models import model_cache_dir
from tests.fixtures.postgres import create_database
from tests.pipelines.test_video_shots import upload

QUICK = {"items": 1, "delay_s": 0}
FAILING = {"items": 1, "delay_s": 0, "fail_rate": 1, "fail_job_above": 0}  # the pipeline reports its one item failed: a step failure

RETRY = {"name": "retry", "steps": [
    {"id": "ok", "kind": "debug.sleep", "spec": QUICK},
    {"id": "flaky", "kind": "debug.sleep", "spec": FAILING, "depends_on": ["ok"],
     "retry": {"max_attempts": 2, "backoff_base_s": 3, "jitter": 0}},
    {"id": "after", "kind": "debug.sleep", "spec": QUICK, "depends_on": ["flaky"]},
]}
BRANCHES = {"name": "branches", "params": {"notify": {"type": "boolean", "default": False}}, "steps": [
    {"id": "work", "kind": "debug.sleep", "spec": {"items": 2, "delay_s": 0, "fail_rate": 1}},  # items fail, the job succeeds
    {"id": "fixup", "kind": "debug.sleep", "spec": QUICK, "when": "steps.work.failed_items > 0"},
    {"id": "notify", "kind": "debug.sleep", "spec": QUICK, "when": "params.notify", "depends_on": ["work"]},
    {"id": "optional", "kind": "debug.sleep", "spec": FAILING, "continue_on_failure": True},
    {"id": "needs_optional", "kind": "debug.sleep", "spec": QUICK, "depends_on": ["optional"]},
]}
KILLED = {"name": "killed", "steps": [{"id": "long", "kind": "debug.sleep", "spec": {"items": 20, "delay_s": 1}}]}
TIMEOUT = {"name": "timeout", "steps": [
    {"id": "sleepy", "kind": "debug.sleep", "spec": {"items": 1, "delay_s": 60}, "timeout_s": 10},
    {"id": "never", "kind": "debug.sleep", "spec": QUICK, "depends_on": ["sleepy"]},
]}
CANCEL = {"name": "cancel", "steps": [
    {"id": "long", "kind": "debug.sleep", "spec": {"items": 120, "delay_s": 0.5}},
    {"id": "next", "kind": "debug.sleep", "spec": QUICK, "depends_on": ["long"]},
]}
CANCEL_GRACE_S = 2
# The tiniest restyle and caption settings of tests/pipelines: 96x64 videos of 32 frames, short side 64, 4 steps.
FOOTAGE_PARAMS = {"short_side": 64, "steps": 4, "chunk_size": 8, "min_shot_len": 3, "caption_tokens": 8, "shot_outputs": ["json"]}


@pytest.fixture(scope="package")
def wf_farm(postgres_server: str, ray_cluster: LocalRayHead, tmp_path_factory: pytest.TempPathFactory,
            demo_models: dict[str, Path]) -> Iterator[JobFarm]:
    home = tmp_path_factory.mktemp("workflows")
    settings = make_settings(home, create_database(postgres_server), ray_cluster, cancel_grace_s=CANCEL_GRACE_S)
    settings.models.cache_dir = model_cache_dir()
    settings.webhooks.allow_private = True
    jf = start_job_farm(settings)
    yield jf
    jf.farm.stop()
    shutil.rmtree(home / "home" / "cache", ignore_errors=True)


def start(jf: JobFarm, definition: dict[str, Any] | str, who: str = "a", **body: Any) -> dict[str, Any]:
    r = jf.clients[who].post("/v1/workflow-runs", json={"project_id": jf.projects[who], "definition": definition, **body})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="package")
def runs(wf_farm: JobFarm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every run the tests watch, started at once; the footage run over two generated videos with sound."""
    jf = wf_farm
    hook = jf.clients["a"].post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["workflow.*"]})
    assert hook.status_code == 201, hook.text
    media = tmp_path_factory.mktemp("footage")
    videos = [upload(jf, make_video(media / f"take{n}.mp4", (16, 5, 11), size=(96, 64), fps=24, audio=True, seed=n).path) for n in (1, 2)]
    from farm.workflows.definition import template

    footage = start(jf, template("footage"), params={**FOOTAGE_PARAMS, "videos": videos})
    saved = jf.clients["a"].post("/v1/workflows", json={"definition": BRANCHES})
    assert saved.status_code == 201, saved.text
    branches = jf.clients["a"].post(f"/v1/workflows/{saved.json()['id']}/runs", json={"project_id": jf.projects["a"]},
                                    headers={"Idempotency-Key": "branches-1"})
    assert branches.status_code == 201, branches.text
    return {
        "footage": {**footage, "videos": videos}, "branches": {**branches.json(), "template": saved.json()},
        "retry": start(jf, RETRY), "killed": start(jf, KILLED), "timeout": start(jf, TIMEOUT), "cancel": start(jf, CANCEL),
    }


def view(jf: JobFarm, run_id: str, who: str = "a") -> dict[str, Any]:
    r = jf.clients[who].get(f"/v1/workflow-runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_run(jf: JobFarm, run_id: str, until: Any = None, timeout: float = 600) -> dict[str, Any]:
    import time

    until = until or (lambda v: v["state"] in ("succeeded", "failed", "cancelled"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = view(jf, run_id)
        if until(v):
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on run {run_id}: {view(jf, run_id)}")


def steps(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in v["steps"]}
