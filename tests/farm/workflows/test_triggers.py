"""Workflow triggers on a real PostgreSQL control plane (no Ray: runs are only started, the dispatcher is off).

Upload triggers fire exactly once per user upload, also with two control
planes on one database, and never on a job's outputs or a deduplicated
re-upload; cron triggers fire once per schedule slot across restarts, and a
farm that was down runs a missed schedule once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm import assets
from farm.accounts import Principal
from farm.api import create_app
from farm.db import Database, Role
from farm.db.models import Job, Project, WorkflowTrigger
from farm.settings import StorageSettings
from farm.workflows import triggers
from kinds.workflow import RUN_KIND
from tests.farm.api.conftest import Farm, make_farm

SHOTS = {"name": "shots-on-upload", "params": {"videos": {"type": "string_list"}, "detector": {"type": "string", "default": "content"}},
         "steps": [{"id": "shots", "kind": "video.shots", "spec": {"asset_ids": "${params.videos}", "detector": "${params.detector}"}}]}


def mp4(n: int) -> bytes:
    """Bytes the farm sniffs as video/mp4, different for each n."""
    return b"\x00\x00\x00\x18ftypisom" + b"\x00" * 12 + f"take {n}".encode()


@pytest.fixture
def farm(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


def runs(db: Database) -> list[Job]:
    with db.session() as s:
        return list(s.scalars(select(Job).where(Job.kind == RUN_KIND).order_by(Job.created_at, Job.id)))


def saved(farm: Farm, who: str = "a_admin") -> str:
    r = farm.call("POST", "/v1/workflows", who, json={"definition": SHOTS})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def add_trigger(farm: Farm, workflow_id: str, who: str = "a_admin", **body: Any) -> Any:
    return farm.call("POST", f"/v1/workflows/{workflow_id}/triggers", who, json=body)


def test_upload_trigger_fires_once_per_user_upload(farm: Farm) -> None:
    project = farm.project()["id"]
    wf = saved(farm)
    r = add_trigger(farm, wf, type="upload", project_id=project, content_type="video/*", asset_param="videos", params={"detector": "adaptive"})
    assert r.status_code == 201, r.text
    trigger = r.json()
    exact = add_trigger(farm, wf, type="upload", project_id=project, content_type="video/x-matroska", asset_param="videos")
    assert exact.status_code == 201, exact.text

    # a second control plane on the same database; uploads alternate between the two
    other = create_app(farm.settings, db=Database(farm.settings.db.url))
    with TestClient(other) as second:
        uploaded = []
        for n in range(10):
            client = farm.client if n % 2 == 0 else second
            up = client.post(f"/v1/projects/{project}/assets", headers=farm.h(), files={"file": (f"take{n}.mp4", mp4(n))})
            assert up.status_code == 201, up.text
            uploaded.append(up.json()["id"])
        again = second.post(f"/v1/projects/{project}/assets", headers=farm.h(), files={"file": ("copy.mp4", mp4(3))})
        assert (again.status_code, again.json()["id"]) == (200, uploaded[3])  # identical bytes: the same asset, no second run
    png = farm.upload(project, b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "still.png")  # not a video: no run
    assert png.status_code == 201, png.text

    started = runs(farm.db)
    assert len(started) == 10
    bound = {run.spec["params"]["videos"][0]: run for run in started}
    assert sorted(bound) == sorted(uploaded)
    assert all(run.spec["params"] == {"videos": [asset], "detector": "adaptive"} for asset, run in bound.items())
    assert all(run.spec["workflow_id"] == wf and run.state == "queued" and run.parent_id is None for run in started)
    view = farm.call("GET", f"/v1/workflow-runs/{started[0].id}").json()
    assert [(s["id"], s["state"], s["job_ids"]) for s in view["steps"]] == [("shots", "pending", [])]  # a real run: advanced by the dispatcher

    fires = farm.call("GET", f"/v1/workflow-triggers/{trigger['id']}").json()["fires"]
    assert sorted((f["key"], f["run_id"]) for f in fires) == sorted((a, bound[a].id) for a in uploaded)
    assert farm.call("GET", f"/v1/workflow-triggers/{exact.json()['id']}").json()["fires"] == []  # video/mp4 is not video/x-matroska

    # a matroska upload fires both triggers, one run each
    mkv = farm.upload(project, b"\x1a\x45\xdf\xa3" + b"\x00" * 16, "take.mkv").json()["id"]
    assert sorted(r.id for r in runs(farm.db) if r.spec["params"]["videos"] == [mkv]) == sorted(
        f["run_id"] for t in (trigger["id"], exact.json()["id"]) for f in farm.call("GET", f"/v1/workflow-triggers/{t}").json()["fires"] if f["key"] == mkv)
    assert len(runs(farm.db)) == 12

    # a job's outputs, recorded as the runner records them (job_id=…), never fire
    job = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": project}).json()
    store = farm.client.app.state.runtime.store
    with farm.db.session() as s:
        owner = s.get(Project, project)
        assert owner is not None
        actor = Principal(key_id="", org_id=owner.org_id, role=Role.member)
        out = assets.ingest(s, store, actor, owner, "out.mp4", io.BytesIO(mp4(100)), limit=1 << 20, job_id=job["id"])
        stored = assets.store_object(store, owner.org_id, owner.id, "clip.mp4", io.BytesIO(mp4(101)))
        clip = assets.register(s, store, actor, owner, stored, job_id=job["id"])
        assert out.created and clip.created and out.asset.content_type == "video/mp4"
    assert len(runs(farm.db)) == 12

    # deleting the trigger stops it
    assert farm.call("DELETE", f"/v1/workflow-triggers/{trigger['id']}").status_code == 204
    assert farm.call("GET", f"/v1/workflow-triggers/{trigger['id']}").status_code == 404
    farm.upload(project, mp4(200), "late.mp4")
    assert len(runs(farm.db)) == 12
    assert [t["id"] for t in farm.call("GET", f"/v1/workflows/{wf}/triggers").json()["data"]] == [exact.json()["id"]]


def test_cron_trigger_runs_once_per_slot_across_restarts(farm: Farm) -> None:
    project = farm.project()["id"]
    wf = saved(farm)
    r = add_trigger(farm, wf, type="cron", project_id=project, cron="* * * * *", params={"videos": ["asset_" + "1" * 28]})
    assert r.status_code == 201, r.text
    trigger = r.json()
    with farm.db.session() as s:
        row = s.get(WorkflowTrigger, trigger["id"])
        assert row is not None
        created = row.created_at
    first_slot = created.replace(second=0, microsecond=0) + timedelta(minutes=1)
    url = farm.settings.db.url

    def tick(at: Any, db: Database | None = None) -> list[str]:
        return triggers.fire_due(db or farm.db, now=at)

    assert tick(created + timedelta(seconds=1)) == []  # slots before the trigger existed never fire
    t = first_slot + timedelta(seconds=5)
    assert len(tick(t)) == 1
    assert tick(t + timedelta(seconds=10)) == []  # the same minute: nothing more
    restarted = Database(url)  # a restarted control plane: a fresh engine on the same database
    try:
        assert tick(t + timedelta(seconds=20), restarted) == []
        assert len(tick(t + timedelta(seconds=61), restarted)) == 1  # the next minute's slot
        # the farm is down for five minutes: one run on the first tick back, then two control planes tick the same instant
        back = t + timedelta(seconds=61 + 300)
        assert len(tick(back, restarted)) == 1
        assert tick(back) == [] and tick(back, restarted) == []
    finally:
        restarted.dispose()

    started = runs(farm.db)
    assert len(started) == 3
    detail = farm.call("GET", f"/v1/workflow-triggers/{trigger['id']}").json()
    slots = [first_slot, first_slot + timedelta(minutes=1), (back).replace(second=0, microsecond=0)]
    assert [f["key"] for f in reversed(detail["fires"])] == [slot.isoformat() for slot in slots]
    assert {f["run_id"] for f in detail["fires"]} == {run.id for run in started}
    assert detail["last_slot"].replace("Z", "+00:00") == slots[-1].isoformat()
    assert all(run.spec["params"] == {"videos": ["asset_" + "1" * 28], "detector": "content"} for run in started)


def test_trigger_validation_names_the_field(farm: Farm) -> None:
    project = farm.project()["id"]
    wf = saved(farm)
    cases = [
        ({"type": "cron", "cron": "every minute", "params": {"videos": ["x"]}}, "cron"),
        ({"type": "cron", "cron": "0 0 * * * *", "params": {"videos": ["x"]}}, "cron"),  # six fields
        ({"type": "cron", "params": {"videos": ["x"]}}, "cron"),
        ({"type": "cron", "cron": "* * * * *"}, "params.videos"),  # required, no default
        ({"type": "cron", "cron": "* * * * *", "params": {"videos": ["x"], "colour": "red"}}, "params.colour"),
        ({"type": "upload", "asset_param": "videos"}, "content_type"),
        ({"type": "upload", "content_type": "video", "asset_param": "videos"}, "content_type"),
        ({"type": "upload", "content_type": "video/*", "asset_param": "clips"}, "asset_param"),
        ({"type": "upload", "content_type": "video/*", "asset_param": "videos", "params": {"videos": ["x"]}}, "params.videos"),  # bound by the upload
        ({"type": "upload", "content_type": "video/*", "asset_param": "detector", "params": {"videos": ["x"]}}, "steps.shots.spec.detector"),
        ({"type": "upload", "content_type": "video/*"}, "asset_param"),
    ]
    for body, field in cases:
        r = add_trigger(farm, wf, project_id=project, **body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"].startswith(f"{field}:"), (body, r.text)
    assert farm.call("GET", f"/v1/workflows/{wf}/triggers").json()["data"] == []


def test_other_orgs_get_404_on_triggers(farm: Farm) -> None:
    project = farm.project()["id"]
    wf = saved(farm)
    trigger = add_trigger(farm, wf, type="upload", project_id=project, content_type="video/mp4", asset_param="videos").json()
    b_project = farm.project("b", "b_admin")["id"]
    b_wf = saved(farm, "b_admin")
    for method, path, kw in [
        ("GET", f"/v1/workflow-triggers/{trigger['id']}", {}),
        ("DELETE", f"/v1/workflow-triggers/{trigger['id']}", {}),
        ("GET", f"/v1/workflows/{wf}/triggers", {}),
        ("POST", f"/v1/workflows/{wf}/triggers", {"json": {"type": "cron", "cron": "* * * * *", "project_id": b_project}}),
        ("POST", f"/v1/workflows/{b_wf}/triggers", {"json": {"type": "upload", "content_type": "video/*", "asset_param": "videos", "project_id": project}}),
    ]:
        r = farm.call(method, path, "b_admin", **kw)
        assert r.status_code == 404, (method, path, r.text)
    assert farm.call("GET", f"/v1/workflow-triggers/{trigger['id']}").status_code == 200
    # org B's uploads into its own project never fire org A's trigger
    farm.upload(b_project, mp4(1), who="b_admin")
    assert runs(farm.db) == []
