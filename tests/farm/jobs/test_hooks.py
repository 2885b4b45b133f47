"""Kind hooks: an extra kind named in settings is served by the app, and its hook sees every state change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, JobEvent, Role
from farm.settings import Settings
from tests.kinds.throwaway import isolate_registry, write_kind, write_module

HOOKS = """
    from farm.jobs.service import add_event

    def on_transition(session, job):
        add_event(session, job.id, "hook", state=job.state)
        if job.state == "cancelled" and job.spec["items"] == 13:
            raise RuntimeError("unlucky")
"""


@pytest.fixture
def client(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Database]]:
    isolate_registry(monkeypatch)
    hooks = write_module(tmp_path, monkeypatch, HOOKS, "hooks")
    kind = write_kind(tmp_path, monkeypatch, "test.hooked", hooks=hooks)
    settings = Settings(home=tmp_path, db={"url": postgres_url}, storage={"local_root": tmp_path / "objects"}, extra_kinds=[kind])
    db = Database(postgres_url)
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as c:
        with db.session() as s:
            org = create_org(s, "org-a")
            _, key = issue_key(s, org.id, "admin", Role.admin)
            s.commit()
        c.headers["Authorization"] = f"Bearer {key}"
        yield c, db
    db.dispose()


def history(db: Database, job_id: str) -> list[tuple[str, str]]:
    with db.session() as s:
        return [(e.type, e.data["state"]) for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]


def test_an_extra_kind_runs_its_hook_on_every_transition(client: tuple[TestClient, Database]) -> None:
    c, db = client
    listed = {k["kind"]: k for k in c.get("/v1/job-kinds").json()}["test.hooked"]
    assert listed["description"] == "Echoes its items: a kind that exists only in a test."
    assert [(o["name"], o["type"], o["per_item"]) for o in listed["outputs"]] == [("clip", "video", "one"), ("report", "table", "one")]
    project = c.post("/v1/projects", json={"name": "p"}).json()["id"]
    job = c.post("/v1/jobs", json={"kind": "test.hooked", "project_id": project, "spec": {"items": 2}}).json()
    assert job["counts"]["total"] == 2
    c.post(f"/v1/jobs/{job['id']}/cancel")
    c.post(f"/v1/jobs/{job['id']}/retry", json={"scope": "all"})
    assert history(db, job["id"]) == [
        ("state", "queued"), ("hook", "queued"), ("state", "cancelled"), ("hook", "cancelled"), ("state", "queued"), ("hook", "queued"),
    ]
    other = c.post("/v1/jobs", json={"kind": "debug.sleep", "project_id": project}).json()
    c.post(f"/v1/jobs/{other['id']}/cancel")
    assert history(db, other["id"]) == [("state", "queued"), ("state", "cancelled")]  # a kind without hooks


def test_a_failing_hook_undoes_the_transition(client: tuple[TestClient, Database]) -> None:
    c, db = client
    project = c.post("/v1/projects", json={"name": "p"}).json()["id"]
    job = c.post("/v1/jobs", json={"kind": "test.hooked", "project_id": project, "spec": {"items": 13}}).json()
    assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 500
    assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
    assert history(db, job["id"]) == [("state", "queued"), ("hook", "queued")]
