"""Typed output records: validated against the kind, idempotent, shown on the job, reset by retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from farm.db.models import Job, JobOutput
from farm.jobs.outputs import outputs_of, record
from farm.jobs.service import record_items, transition
from farm.jobs.states import JobState
from farm.settings import StorageSettings
from tests.farm.api.conftest import Farm, make_farm


@pytest.fixture
def farm(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


def setup(farm: Farm, kind: str = "video.shots", assets: int = 4) -> tuple[str, list[str]]:
    """A running job of the kind in a fresh project, and that many assets of the project."""
    p = farm.project()
    ids = [farm.upload(p["id"], f"asset {i}".encode(), f"a{i}.bin").json()["id"] for i in range(assets)]
    spec: dict[str, Any] = {"asset_ids": ids[:2]} if kind == "video.shots" else {"batch_id": "batch_" + "0" * 28}
    job = farm.call("POST", "/v1/jobs", json={"kind": kind, "project_id": p["id"], "spec": spec}).json()
    with farm.db.session() as s:
        transition(s, s.get(Job, job["id"]), JobState.running)
        s.commit()
    return job["id"], ids


def rec(farm: Farm, job_id: str, item: int | None, output: str, asset_id: str) -> int:
    with farm.db.session() as s:
        row = record(s, s.get(Job, job_id), item, output, asset_id)
        s.commit()
        return row.id


def finish(farm: Farm, job_id: str, outcomes: list[tuple[int, bool, str | None]], state: JobState) -> None:
    with farm.db.session() as s:
        job = s.get(Job, job_id)
        record_items(s, job, outcomes, attempt=1)
        transition(s, job, state)
        s.commit()


def shown(farm: Farm, job_id: str) -> list[tuple[int | None, str, str, str]]:
    return [(o["item"], o["output"], o["type"], o["asset_id"]) for o in farm.call("GET", f"/v1/jobs/{job_id}").json()["outputs"]]


def test_outputs_are_recorded_by_type_and_shown_on_the_job(farm: Farm) -> None:
    job_id, (a, b, k1, k2) = setup(farm)
    rec(farm, job_id, 1, "shots", b)
    rec(farm, job_id, 0, "shots", a)
    rec(farm, job_id, 0, "keyframes", k1)
    rec(farm, job_id, 0, "keyframes", k2)  # many per item
    finish(farm, job_id, [(0, True, None), (1, True, None)], JobState.succeeded)
    got = farm.call("GET", f"/v1/jobs/{job_id}").json()
    assert got["state"] == "succeeded" and got["result_asset_ids"] == [b, a, k1, k2]
    assert shown(farm, job_id) == [
        (0, "shots", "video_shots", a), (0, "keyframes", "image", k1), (0, "keyframes", "image", k2), (1, "shots", "video_shots", b),
    ]
    with farm.db.session() as s:
        assert [(o.item, o.asset_id) for o in outputs_of(s, job_id, "shots")] == [(0, a), (1, b)]
        assert outputs_of(s, job_id, "edl") == []
    assert farm.call("GET", f"/v1/jobs/{job_id}", "b_admin").status_code == 404  # another org sees no job, no outputs
    kinds = {k["kind"]: k for k in farm.call("GET", "/v1/job-kinds", "a_viewer").json()}
    assert {"name": "keyframes", "type": "image", "per_item": "many", "description": kinds["video.shots"]["outputs"][1]["description"]} \
        == kinds["video.shots"]["outputs"][1]
    assert [o["name"] for o in kinds["batch.chat"]["outputs"]] == ["output_file", "error_file"] and kinds["debug.sleep"]["outputs"] == []


def test_recording_is_idempotent_and_checked_against_the_kind(farm: Farm) -> None:
    job_id, (a, b, c, _) = setup(farm)
    first = rec(farm, job_id, 0, "shots", a)
    assert rec(farm, job_id, 0, "shots", a) == first  # a replayed record is the same row
    with pytest.raises(ValueError, match=f"output 'shots' of item 0 of job {job_id} already holds asset {a}; it holds one"):
        rec(farm, job_id, 0, "shots", b)
    with pytest.raises(ValueError, match="job kind 'video.shots' has no output 'thumbnails'; it has: shots, keyframes"):
        rec(farm, job_id, 1, "thumbnails", b)
    with pytest.raises(ValueError, match="item must be >= 0"):
        rec(farm, job_id, -1, "shots", b)
    theirs = farm.upload(farm.project("pb", "b_admin")["id"], b"their bytes", who="b_admin").json()["id"]
    other_project = farm.upload(farm.project("p2")["id"], b"elsewhere").json()["id"]
    for foreign in (theirs, other_project, "asset_doesnotexist"):
        with pytest.raises(ValueError, match="is not an asset of the job's project"):
            rec(farm, job_id, 1, "shots", foreign)
    rec(farm, job_id, 1, "shots", c)
    assert shown(farm, job_id) == [(0, "shots", "video_shots", a), (1, "shots", "video_shots", c)]
    assert farm.call("GET", f"/v1/jobs/{job_id}").json()["result_asset_ids"] == [a, c]


def test_job_level_outputs_are_idempotent_on_postgresql(farm: Farm) -> None:
    job_id, (out, err, img, _) = setup(farm, "batch.images")
    first = rec(farm, job_id, None, "output_file", out)
    assert rec(farm, job_id, None, "output_file", out) == first
    rec(farm, job_id, None, "error_file", err)
    rec(farm, job_id, 3, "images", img)
    with pytest.raises(ValueError, match="output 'output_file' of the job .* already holds"):
        rec(farm, job_id, None, "output_file", err)
    assert shown(farm, job_id) == [(None, "output_file", "jsonl", out), (None, "error_file", "jsonl", err), (3, "images", "image", img)]
    with farm.db.session() as s, pytest.raises(IntegrityError):  # NULL items collide in the table too, not only in record()
        s.execute(insert(JobOutput).values(job_id=job_id, item=None, output="output_file", type="jsonl", asset_id=out))
        s.flush()


def test_retry_all_clears_outputs_and_retry_failed_keeps_finished_items(farm: Farm) -> None:
    job_id, (a, b, c, d) = setup(farm)
    rec(farm, job_id, 0, "shots", a)
    rec(farm, job_id, 1, "shots", b)  # item 1 wrote its shots, then failed
    finish(farm, job_id, [(0, True, None), (1, False, "decode error")], JobState.failed)

    r = farm.call("POST", f"/v1/jobs/{job_id}/retry", json={"scope": "failed"}).json()
    assert r["state"] == "queued" and r["result_asset_ids"] == [a]
    assert shown(farm, job_id) == [(0, "shots", "video_shots", a)]
    with farm.db.session() as s:
        transition(s, s.get(Job, job_id), JobState.running)
        s.commit()
    rec(farm, job_id, 1, "shots", c)  # the rerun may make different bytes: no clash with the dropped record
    rec(farm, job_id, 1, "keyframes", d)
    finish(farm, job_id, [(1, True, None)], JobState.succeeded)
    assert shown(farm, job_id) == [(0, "shots", "video_shots", a), (1, "shots", "video_shots", c), (1, "keyframes", "image", d)]
    assert farm.call("GET", f"/v1/jobs/{job_id}").json()["result_asset_ids"] == [a, c, d]

    r = farm.call("POST", f"/v1/jobs/{job_id}/retry", json={"scope": "all"}).json()
    assert r["result_asset_ids"] == [] and shown(farm, job_id) == []
    with farm.db.session() as s:
        assert s.scalars(select(JobOutput).where(JobOutput.job_id == job_id)).all() == []


def test_a_requeued_job_keeps_outputs_of_items_with_an_outcome(farm: Farm) -> None:
    """A runner that died: finished items are skipped next time, unfinished ones and job-level files are made again."""
    job_id, (out, img0, img1, _) = setup(farm, "batch.images")
    rec(farm, job_id, 0, "images", img0)
    rec(farm, job_id, 1, "images", img1)  # its outcome was still buffered when the runner died
    rec(farm, job_id, None, "output_file", out)
    with farm.db.session() as s:
        job = s.get(Job, job_id)
        record_items(s, job, [(0, True, None)], attempt=1)
        transition(s, job, JobState.queued, reason="runner lost")
        s.commit()
    assert shown(farm, job_id) == [(0, "images", "image", img0)]
    assert farm.call("GET", f"/v1/jobs/{job_id}").json()["result_asset_ids"] == [img0]
