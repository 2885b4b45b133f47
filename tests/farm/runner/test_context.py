"""The door: inputs resolved for the job's organization, outputs recorded once as typed assets."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.db.models import Asset, Job, JobOutput
from farm.jobs.service import transition
from farm.jobs.states import JobState
from farm.runner.context import JobContext
from farm.settings import StorageSettings
from farm.storage import open_store
from kinds import parse_spec
from pipelines.stages.media.synthetic import make_video
from tests.farm.api.conftest import Farm, make_farm


@pytest.fixture
def farm(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_video(tmp_path_factory.mktemp("v") / "v.mp4", [8, 8], size=(64, 64)).path.read_bytes()


def start(farm: Farm, project_id: str, spec: dict[str, Any], who: str = "a_admin") -> JobContext:
    """A running `video.shots` job and its context, as the runner builds it."""
    r = farm.call("POST", "/v1/jobs", who, json={"kind": "video.shots", "project_id": project_id, "spec": spec})
    assert r.status_code == 201, r.text
    with farm.db.session() as s:
        job = s.get(Job, r.json()["id"])
        assert job is not None
        job.attempts = 1
        transition(s, job, JobState.running)
        s.commit()
        return JobContext(job, parse_spec(job.kind, job.spec), settings=farm.settings, db=farm.db, store=open_store(farm.settings))


def upload(farm: Farm, project_id: str, data: bytes, name: str, who: str = "a_admin") -> str:
    r = farm.upload(project_id, data, name, who)
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_inputs_by_id_read_another_orgs_asset_as_missing(farm: Farm, video: bytes) -> None:
    ours, theirs = farm.project(), farm.project(who="b_admin")
    clip = upload(farm, ours["id"], video, "clip.mp4")
    notes = upload(farm, ours["id"], b"not a video\n", "notes.txt")
    foreign = upload(farm, theirs["id"], video + b"\0", "theirs.mp4", who="b_admin")
    ctx = start(farm, ours["id"], {"asset_ids": [foreign, clip, notes, "asset_missing"]})
    found, rejected = ctx.resolve_inputs(ctx.spec.asset_ids, None)  # type: ignore[attr-defined]
    assert [(a.index, a.id, a.name, a.kind) for a in found] == [(1, clip, "clip.mp4", "video")]
    assert rejected == [
        (0, f"asset {foreign} not found"),
        (2, f"asset {notes} (notes.txt) is not a video: its content is text/plain"),
        (3, "asset asset_missing not found"),
    ]
    everything, none_rejected = ctx.resolve_inputs([notes, clip], None, kind=None)
    assert [a.id for a in everything] == [notes, clip] and none_rejected == []


def test_inputs_by_project_skip_excluded_names_and_foreign_projects(farm: Farm, video: bytes) -> None:
    ours, theirs = farm.project(), farm.project(who="b_admin")
    first = upload(farm, ours["id"], video, "a.mp4")
    upload(farm, ours["id"], video + b"\0", "a.shot-001.mp4")
    upload(farm, ours["id"], b"text\n", "notes.txt")
    ctx = start(farm, ours["id"], {"project_id": ours["id"]})
    found, rejected = ctx.resolve_inputs(None, ours["id"], exclude=lambda name: ".shot-" in name)
    assert [a.id for a in found] == [first] and rejected == []
    assert ctx.resolve_inputs(None, theirs["id"]) == ([], [(0, f"project {theirs['id']} not found")])


def test_worker_outputs_are_recorded_once_per_bytes(farm: Farm, video: bytes) -> None:
    p = farm.project()
    ctx = start(farm, p["id"], {"asset_ids": [upload(farm, p["id"], video, "v.mp4")]})
    objects = pickle.loads(pickle.dumps(ctx.objects))  # as a worker gets it
    first = objects.put("v.shot-001.jpg", b"\xff\xd8\xff\xe0 jpeg bytes")
    again = objects.put("v.shot-002.jpg", b"\xff\xd8\xff\xe0 jpeg bytes")
    assert first.object_key and first.object_key.startswith(f"orgs/{ctx.org_id}/projects/{p['id']}/assets/")
    assert (first.size, first.content_type) == (15, "image/jpeg") and first.sha256 == again.sha256
    a = ctx.record_output(0, "keyframes", first)
    b = ctx.record_output(0, "keyframes", again)
    assert a == b == first.asset_id
    with pytest.raises(FileNotFoundError):
        objects.local_path(again.object_key or "")  # the duplicate's object is gone
    assert objects.local_path(first.object_key).read_bytes() == b"\xff\xd8\xff\xe0 jpeg bytes"
    sheet = ctx.save_output(0, "contact_sheet", "v.contact.jpg", b"\xff\xd8\xff\xe0 sheet")
    with pytest.raises(ValueError, match="has no output"):
        ctx.save_output(0, "posters", "v.poster.jpg", b"\xff\xd8\xff\xe0 poster")  # refused before it is stored
    with farm.db.session() as s:
        job = s.get(Job, ctx.job_id)
        assert job is not None and job.result_asset_ids == [a, sheet]
        rows = {(o.item, o.output, o.type, o.asset_id) for o in s.query(JobOutput).filter_by(job_id=ctx.job_id)}
        assert rows == {(0, "keyframes", "image", a), (0, "contact_sheet", "image", sheet)}
        asset = s.get(Asset, a)
        assert asset is not None and (asset.name, asset.kind, asset.org_id) == ("v.shot-001.jpg", "image", ctx.org_id)
        assert s.query(Asset).filter_by(name="v.poster.jpg").count() == 0
