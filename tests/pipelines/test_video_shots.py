"""`video.shots` end to end: uploaded through the API, run by the dispatcher as a Ray Job on the real cluster.

Acceptance 2: three videos, one corrupt: the good two produce every output,
the corrupt one is one failed item with a clear message, the job succeeds.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import av
import decord
from sqlalchemy import select

from farm.db import JobEvent, JobItem
from pipelines.stages.media.synthetic import SyntheticVideo
from tests.farm.dispatch.conftest import JobFarm
from tests.pipelines.conftest import BIKES_CUTS, EDGE_CHUNK


def upload(jf: JobFarm, path: Path, who: str = "a", name: str | None = None) -> str:
    with path.open("rb") as fh:
        r = jf.clients[who].post(f"/v1/projects/{jf.projects[who]}/assets", files={"file": (name or path.name, fh)})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def content(jf: JobFarm, asset_id: str, who: str = "a") -> bytes:
    r = jf.clients[who].get(f"/v1/assets/{asset_id}/content")
    assert r.status_code == 200, r.text
    return r.content


def item_errors(jf: JobFarm, job_id: str) -> dict[int, str | None]:
    with jf.farm.db.session() as s:
        return {i.idx: i.error for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id, JobItem.ok.is_(False)))}


def progress_events(jf: JobFarm, job_id: str) -> list[dict[str, Any]]:
    with jf.farm.db.session() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "progress").order_by(JobEvent.seq))
        return [e.data for e in rows]


def stream_events(jf: JobFarm, job_id: str, type: str) -> list[dict[str, Any]]:
    """The job's events of one type as a user reads them: the Server-Sent Events of a finished job."""
    r = jf.clients["a"].get(f"/v1/jobs/{job_id}/events")
    assert r.status_code == 200, r.text
    found = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    return [e for e in found if e["type"] == type]


def shot_starts(doc: dict[str, Any]) -> list[int]:
    return [s["start_frame"] for s in doc["shots"][1:]]


def test_three_videos_one_corrupt(shots_farm: JobFarm, edge_video: SyntheticVideo, bikes: Path, truncated_video: Path) -> None:
    ids = [upload(shots_farm, edge_video.path), upload(shots_farm, truncated_video, name="broken.mp4"), upload(shots_farm, bikes)]
    job = shots_farm.submit(kind="video.shots", spec={"asset_ids": ids, "chunk_size": EDGE_CHUNK, "clip_preset": "ultrafast"})
    assert job["counts"]["total"] == 3
    done = shots_farm.wait_done(job["id"], timeout=300)
    assert done["state"] == "succeeded", done
    assert done["counts"] == {"total": 3, "succeeded": 2, "failed": 1}
    errors = item_errors(shots_farm, job["id"])
    assert list(errors) == [1] and "corrupt or truncated MP4/MOV" in (errors[1] or "")

    results = {shots_farm.clients["a"].get(f"/v1/assets/{a}").json()["name"]: a for a in done["result_asset_ids"]}
    assert len(results) == len(done["result_asset_ids"])
    for stem, shots in (("edges", 10), ("bikes", 6)):
        expected = {f"{stem}.shots.json", f"{stem}.shots.csv", f"{stem}.edl", f"{stem}.contact.jpg"}
        expected |= {f"{stem}.shot-{i:03d}.{ext}" for i in range(1, shots + 1) for ext in ("mp4", "jpg")}
        assert expected <= set(results), sorted(expected - set(results))
    assert not any(n.startswith("broken") for n in results)

    doc = json.loads(content(shots_farm, results["edges.shots.json"]))
    assert (doc["fps"], doc["frames"], doc["resolution"]) == (24.0, 280, [192, 108])
    starts = shot_starts(doc)
    assert len(starts) == len(edge_video.cuts) + len(edge_video.fades)
    assert all(abs(a - b) <= 1 for a, b in zip(starts, sorted(edge_video.cuts + edge_video.fades)))
    assert [t["kind"] for t in doc["transitions"]].count("fade") == 1
    first = doc["shots"][0]
    assert first["index"] == 1 and first["start_frame"] == 0 and first["end_frame"] == 32 and first["keyframes"] == [16]
    assert first["clip"]["asset_id"] == results["edges.shot-001.mp4"] and first["clip"]["audio"] is True
    assert shot_starts(json.loads(content(shots_farm, results["bikes.shots.json"]))) == list(BIKES_CUTS)

    rows = list(csv.DictReader(io.StringIO(content(shots_farm, results["edges.shots.csv"]).decode())))
    assert len(rows) == 10 and rows[-1]["end_frame"] == "280"
    assert content(shots_farm, results["bikes.edl"]).decode().startswith("TITLE: bikes\nFCM: NON-DROP FRAME\n")
    assert content(shots_farm, results["edges.contact.jpg"])[:3] == b"\xff\xd8\xff"

    clip = content(shots_farm, results["edges.shot-004.mp4"])  # the 6-frame shot
    with av.open(io.BytesIO(clip)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6 and c.streams.audio
    assert len(decord.VideoReader(io.BytesIO(clip))) == 6

    progress = [e for e in progress_events(shots_farm, job["id"]) if "frames_decoded" in e]
    decoded = [e["frames_decoded"] for e in progress]
    assert decoded == sorted(decoded) and progress[-1]["frames_total"] == 280 + 250 and decoded[-1] == 530

    (timings,) = stream_events(shots_farm, job["id"], "timings")  # where the time went, once per run
    assert list(timings["seconds"]) == ["setup", "probe", "decode", "detect", "render", "record"]
    assert all(timings["seconds"][p] > 0 for p in ("setup", "probe", "decode", "render", "record")), timings
    assert timings["runner_start_s"] > 0


def test_foreign_missing_and_non_video_inputs_fail_as_items(shots_farm: JobFarm, bikes: Path, tmp_path: Path) -> None:
    theirs = upload(shots_farm, bikes, who="b")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    ours = upload(shots_farm, notes)
    job = shots_farm.submit(kind="video.shots", spec={"asset_ids": [theirs, ours, "asset_missing"]})
    done = shots_farm.wait_done(job["id"], timeout=120)
    assert done["state"] == "failed" and done["counts"] == {"total": 3, "succeeded": 0, "failed": 3}
    errors = item_errors(shots_farm, job["id"])
    assert errors[0] == f"asset {theirs} not found"  # another org's asset reads as missing
    assert errors[1] == f"asset {ours} (notes.txt) is not a video: its content is text/plain"
    assert errors[2] == "asset asset_missing not found"
    assert done["result_asset_ids"] == []

    other = shots_farm.submit(kind="video.shots", spec={"project_id": shots_farm.projects["b"]})
    assert shots_farm.wait_done(other["id"], timeout=120)["state"] == "failed"
    assert item_errors(shots_farm, other["id"]) == {0: f"project {shots_farm.projects['b']} not found"}
