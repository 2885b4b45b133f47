"""`video.restyle` end to end: uploaded through the API, rendered by the tiny diffusion model on the real Ray cluster.

Every job here renders small videos (96x64, 32 frames, short side 64, 4
steps at strength 0.5: 2 denoising steps per frame); what is asserted does
not depend on size: frames, timestamps and audio kept, cuts kept, bad input
refused or failed as its item, determinism across chunk layouts, resumption
after a killed runner, preview, cancel.

A job's start (runner, Ray Data, engines loading the model) costs far more
than its frames, so the module runs as few jobs as the points need and asks
many things of each: one farm for the module, and the jobs whose results
several tests read are submitted together at the start (the farm runs two at
a time) and waited on where a test needs them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from sqlalchemy import select

from cluster.local import LocalRayHead
from farm.db import Job, JobPart
from farm.storage import open_store
from pipelines.stages.backend import run_local
from pipelines.stages.media.probe import probe
from pipelines.stages.media.synthetic import SyntheticVideo, make_video
from pipelines.stages.payloads import Probed, Source
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import find_shots
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.fixtures.models import model_cache_dir
from tests.fixtures.postgres import PartGate
from tests.pipelines.conftest import audio_samples, vfr_copy
from tests.pipelines.test_video_shots import content, item_errors, progress_events, stream_events, upload

# Chunks of 8: the cut at 16 falls exactly on a chunk boundary, the 5-frame shot is shorter than a chunk.
SHOTS = (16, 5, 11)
CUTS = (16, 21)
FRAMES = sum(SHOTS)
SPEC: dict[str, Any] = {
    "prompt": "a watercolor painting", "short_side": 64, "steps": 4, "strength": 0.5, "chunk_size": 8,
    "min_shot_len": 3, "model": "tiny-sd",
}
MAX_FRAMES = FRAMES  # the main job's limit: the 32-frame videos pass, the 40-frame one fails as its item
# The main job's inputs, in item order: two good videos (the second the first's pictures, retimed, no audio), then bad ones.
MAIN_ITEMS = ("three", "vfr", "broken", "empty", "long")


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    return make_video(tmp_path_factory.mktemp("restyle") / "three.mp4", SHOTS, size=(96, 64), fps=24, audio=True, seed=3)


@pytest.fixture(scope="module")
def vfr_video(three_shots: SyntheticVideo) -> Path:
    """The same pictures, no audio, frames lasting 1/60 s to 1/10 s."""
    deltas = np.random.default_rng(5).choice([1500, 2000, 3750, 6000, 9000], size=three_shots.frames)
    return vfr_copy(three_shots.path, three_shots.path.with_name("vfr.mp4"), deltas)


@pytest.fixture(scope="module")
def bad_videos(three_shots: SyntheticVideo) -> dict[str, Path]:
    """A truncated upload, a header without frames, and a video longer than the main job's `max_frames`."""
    folder = three_shots.path.parent
    broken = folder / "broken.mp4"
    data = three_shots.path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    empty = folder / "empty.mp4"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()  # a header, no frames
    long = make_video(folder / "long.mp4", (20, 20), size=(64, 64), fps=24, seed=4).path
    return {"broken": broken, "empty": empty, "long": long}


@pytest.fixture(scope="module")
def restyle_farm(module_database: str, ray_cluster: LocalRayHead, tmp_path_factory: pytest.TempPathFactory,
                 demo_models: dict[str, Path]) -> Iterator[JobFarm]:
    """One control plane for the module. Two jobs at a time: each runs two to four engine actors on two cores."""
    home = tmp_path_factory.mktemp("restyle-farm")
    settings = make_settings(home, module_database, ray_cluster, max_running=2)
    settings.models.cache_dir = model_cache_dir()
    jf = start_job_farm(settings)
    yield jf
    jf.close()
    shutil.rmtree(home / "home" / "cache", ignore_errors=True)


@dataclass
class RestyleJobs:
    """Jobs submitted together at the module's start, each waited on once by the first test that needs it."""

    jf: JobFarm
    assets: dict[str, str]  # the uploads by name ("three", "vfr", ...)
    ids: dict[str, str]  # the jobs by name
    killed_before: list[JobPart]  # the "killed" job's chunk records when its first runner was killed
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)

    def done(self, name: str) -> dict[str, Any]:
        if name not in self.finished:
            self.finished[name] = self.jf.wait_done(self.ids[name], timeout=900)
        return self.finished[name]


@pytest.fixture(scope="module")
def jobs(restyle_farm: JobFarm, three_shots: SyntheticVideo, vfr_video: Path, bad_videos: dict[str, Path]) -> RestyleJobs:
    """Four jobs, two at a time; the runner of "killed" is SIGKILLed once two of its six chunks are recorded (and no more: `PartGate`).

    "killed" renders the main job's first video in chunks of 6 instead of 8,
    so its frames sit at other batch positions: it is the determinism test's
    other chunk layout as well as the resume test's job.
    """
    jf = restyle_farm
    paths = {"three": three_shots.path, "vfr": vfr_video, **bad_videos}
    assets = {name: upload(jf, paths[name]) for name in MAIN_ITEMS}
    three = [assets["three"]]
    specs = {  # in the order the farm starts them
        "killed": {**SPEC, "asset_ids": three, "chunk_size": 6},  # 3 + 1 + 2 chunks
        "main": {**SPEC, "asset_ids": [assets[n] for n in MAIN_ITEMS], "max_frames": MAX_FRAMES},
        "per frame": {**SPEC, "asset_ids": three, "seed_policy": "per_frame", "consistency": "none"},
        "preview": {**SPEC, "asset_ids": three, "preview": True},
    }
    ids = {name: jf.submit(kind="video.restyle", spec=spec)["id"] for name, spec in specs.items()}
    gate = PartGate(jf.settings.db.url, ids["killed"], after=2)  # the third chunk's record waits here
    try:
        before = wait_for_parts(jf, ids["killed"], 2)
        with jf.farm.db.session() as s:
            pid = s.get(Job, ids["killed"]).runner_pid
        assert pid
        os.kill(pid, signal.SIGKILL)
    finally:
        gate.open()
    return RestyleJobs(jf, assets, ids, before)


def results(jf: JobFarm, job: dict[str, Any]) -> dict[str, str]:
    """The job's result assets by name."""
    return {jf.clients["a"].get(f"/v1/assets/{a}").json()["name"]: a for a in job["result_asset_ids"]}


def download(jf: JobFarm, asset_id: str, path: Path) -> Path:
    path.write_bytes(content(jf, asset_id))
    return path


def report(jf: JobFarm, job: dict[str, Any], stem: str) -> dict[str, Any]:
    return json.loads(content(jf, results(jf, job)[f"{stem}.restyle.json"]))


def checksums(doc: dict[str, Any]) -> list[str]:
    return [c for chunk in doc["checksums"] for c in chunk["frames"]]


def seconds(p: Probed) -> list[Fraction]:
    return [Fraction(int(t)) * p.video.time_base for t in p.frame_pts]


def cuts_of(path: Path) -> list[int]:
    """Where the farm's own shot detector finds cuts in a file."""
    config = DetectorConfig(kind="content", threshold=None, min_shot_len=3, fades=True, keyframes_per_shot=1)
    detected, failed = find_shots([Source(0, path.name, path=str(path))], config, run=run_local)
    assert not failed, failed
    return [s.start for s in detected[0].shots[1:]]


def parts(jf: JobFarm, job_id: str) -> list[JobPart]:
    with jf.farm.db.session() as s:
        rows = list(s.scalars(select(JobPart).where(JobPart.job_id == job_id).order_by(JobPart.item, JobPart.part)))
        s.expunge_all()
        return rows


def wait_for_parts(jf: JobFarm, job_id: str, at_least: int) -> list[JobPart]:
    """The job's chunk records once ``at_least`` are there (polled: a chunk takes far longer than a query)."""
    deadline = time.monotonic() + 900  # a job's start on a loaded machine takes minutes
    while len(rows := parts(jf, job_id)) < at_least:
        assert time.monotonic() < deadline and jf.job(job_id)["state"] in ("queued", "running"), jf.job(job_id)
        time.sleep(0.05)
    return rows


def test_restyle_keeps_frames_timing_audio_and_cuts(jobs: RestyleJobs, three_shots: SyntheticVideo, vfr_video: Path,
                                                   tmp_path: Path) -> None:
    jf, done = jobs.jf, jobs.done("main")
    # Two good videos succeed beside three bad ones (test_bad_input reads why those failed).
    assert done["state"] == "succeeded" and done["counts"] == {"total": 5, "succeeded": 2, "failed": 3}, done
    names = results(jf, done)
    assert {"three.restyled.mp4", "three.restyle.jpg", "three.restyle.json", "vfr.restyled.mp4", "vfr.restyle.jpg", "vfr.restyle.json"} <= set(names)
    by_output = {(o["item"], o["output"]): o["type"] for o in done["outputs"]}
    assert by_output[(0, "video")] == "video" and by_output[(1, "contact_sheet")] == "image" and by_output[(1, "report")] == "report"

    for stem, source, audio in (("three", three_shots.path, True), ("vfr", vfr_video, False)):
        out = download(jf, names[f"{stem}.restyled.mp4"], tmp_path / f"{stem}-out.mp4")
        src, got = probe(source, Source(0, stem, path=str(source))), probe(out, Source(0, stem, path=str(out)))
        assert got.video.frames == src.video.frames == FRAMES
        assert seconds(got) == seconds(src), f"{stem}: frame timestamps moved"  # VFR keeps its own
        assert abs(got.video.duration - src.video.duration) <= 1 / src.video.fps
        assert (got.video.width, got.video.height) == (96, 64)
        assert {0, *CUTS} <= set(got.keyframes.tolist()), "a keyframe at each shot start"
        assert got.video.has_audio is audio
        if audio:
            theirs, ours = audio_samples(source), audio_samples(out)
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
        assert all(abs(a - b) <= 1 for a, b in zip(cuts_of(out), CUTS, strict=True)), cuts_of(out)

        doc = report(jf, done, stem)
        assert len(checksums(doc)) == FRAMES and doc["output"]["frames"] == FRAMES
        assert [(s["start_frame"], s["end_frame"]) for s in doc["shots"]] == [(0, 16), (16, 21), (21, 32)]
        assert doc["flicker"] is not None and doc["flicker"] > 0
        assert content(jf, names[f"{stem}.restyle.jpg"])[:3] == b"\xff\xd8\xff"

    # Chunks within shots: 0-8, 8-16 | 16-21 | 21-29, 29-32; rendered on more than one engine process.
    rows = parts(jf, done["id"])
    assert [(p.data["start"], p.data["end"]) for p in rows if p.item == 0] == [(0, 8), (8, 16), (16, 21), (21, 29), (29, 32)]
    assert {p.item for p in rows} == {0, 1}, "a failed video leaves no chunk records"
    workers = {p.worker for p in rows}
    assert len(workers) >= 2, f"all chunks rendered by one worker process: {workers}"
    assert all(p.object_key is None for p in rows), "chunk files are dropped once the video is joined"

    progress = [e for e in progress_events(jf, done["id"]) if "frames_rendered" in e]
    rendered = [e["frames_rendered"] for e in progress]
    assert rendered == sorted(rendered) and progress[-1]["frames_total"] == 2 * FRAMES == rendered[-1]
    # Where the time went, as a user reads it from the job's events.
    [timings] = stream_events(jf, done["id"], "timings")
    assert set(timings["seconds"]) == {"shots", "render", "record", "join"} and all(s > 0 for s in timings["seconds"].values()), timings
    assert timings["videos"] == 5 and timings["chunks_rendered"] == 10 and 0 < timings["first_chunk_s"] <= timings["seconds"]["render"]
    assert timings["engines"] == 2  # 10 chunks: two engines, not four (each engine is loaded for at least 4 chunks)


def test_bad_input(jobs: RestyleJobs, three_shots: SyntheticVideo) -> None:
    """Spec problems are a 422 at submit naming the field; bad videos fail as their items while the others render."""
    jf = jobs.jf
    c, project = jf.clients["a"], jf.projects["a"]
    good = upload(jf, three_shots.path)
    for name, value, words in (("model", "no-such-model", "unknown diffusion model"), ("strength", 1.5, "less than or equal to 1"),
                               ("steps", 0, "greater than or equal to 1"), ("short_side", 100, "multiple of 8")):
        r = c.post("/v1/jobs", json={"kind": "video.restyle", "project_id": project, "spec": {**SPEC, "asset_ids": [good], name: value}})
        assert r.status_code == 422 and f"spec.{name}" in r.text and words in r.text, (name, r.text)

    done = jobs.done("main")  # items 0 and 1 succeed (test above); 2, 3 and 4 are the bad ones
    errors = item_errors(jf, done["id"])
    assert set(errors) == {2, 3, 4}, errors
    assert "corrupt or truncated" in (errors[2] or "") and "no video frames" in (errors[3] or ""), errors
    assert f"40 frames, more than this job's max_frames ({MAX_FRAMES})" in (errors[4] or ""), errors


def test_same_frames_for_any_chunk_layout_and_anchored_seeds_flicker_less(jobs: RestyleJobs) -> None:
    """Determinism (the same pictures rendered again, and in another chunk layout) and consistency (per-shot + anchor against per-frame seeds).

    The margin: with random weights the model barely reads its input, so
    each frame's look comes from its noise. Per-shot seeds give every frame
    of a shot the same noise and the anchor the same attention context, so
    consecutive frames differ about as little as the source does; per-frame
    seeds draw new noise every frame, a new picture each time. The measured
    gap is tens of times; the test asks for 4x.
    """
    jf = jobs.jf
    docs = {}
    for name in ("main", "killed", "per frame"):
        done = jobs.done(name)
        assert done["state"] == "succeeded", (name, done)
        docs[name] = report(jf, done, "three")
    first = checksums(docs["main"])
    assert len(first) == FRAMES and len(set(first)) > 1
    # The VFR copy holds the same pictures: rendered a second time in the same job, on whichever engine, they come out the same.
    assert checksums(report(jf, jobs.done("main"), "vfr")) == first, "the same pictures rendered twice differ"
    # Another job, in chunks of 6 instead of 8 (frames at other batch positions, other engines, two runners), gives the same frames.
    assert [(c["start"], c["end"]) for c in docs["killed"]["chunks"]] == [(0, 6), (6, 12), (12, 16), (16, 21), (21, 27), (27, 32)]
    assert checksums(docs["killed"]) == first, "rendered frames differ between chunk layouts"
    assert docs["main"]["flicker"] * 4 < docs["per frame"]["flicker"], (docs["main"]["flicker"], docs["per frame"]["flicker"])


def test_killed_runner_renders_only_missing_chunks(jobs: RestyleJobs) -> None:
    """The runner was SIGKILLed once two of six chunks were recorded: the retry renders the rest, and the frames equal an uninterrupted run's."""
    jf, before, done = jobs.jf, jobs.killed_before, jobs.done("killed")
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert len(before) == 2, "the runner was not killed at the gate"
    after = {p.part: p for p in parts(jf, done["id"])}
    assert len(after) == 3 + 1 + 2
    assert all(after[p.part].attempt == 1 for p in before), "a chunk done before the kill was rendered again"
    again = [p for p in after.values() if p.attempt == 2]
    assert again and {p.part for p in again}.isdisjoint({p.part for p in before})
    # The uninterrupted run: the main job's, in chunks of 8 (frames do not depend on the chunk layout, test above).
    assert checksums(report(jf, done, "three")) == checksums(report(jf, jobs.done("main"), "three"))


def test_cancelled_job_leaves_no_chunk_files(jobs: RestyleJobs) -> None:
    """Before the preview test on purpose: this job then starts beside the preview job, not after it."""
    jf = jobs.jf
    # Six chunks of 8 denoising steps a frame: the five left after the first take far longer than noticing the cancel.
    spec = {**SPEC, "asset_ids": [jobs.assets["three"]], "chunk_size": 6, "steps": 16}
    job = jf.submit(kind="video.restyle", spec=spec)
    rows = wait_for_parts(jf, job["id"], 1)
    keys = [p.object_key for p in rows if p.object_key]
    store = open_store(jf.settings)
    assert keys and all(store.exists(k) for k in keys)
    assert jf.clients["a"].post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert jf.wait_done(job["id"], timeout=300)["state"] == "cancelled"
    deadline = time.monotonic() + 30
    while parts(jf, job["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert parts(jf, job["id"]) == []
    assert not any(store.exists(k) for k in keys), "chunk files of a cancelled job are removed"


def test_preview_renders_one_keyframe_per_shot_and_no_video(jobs: RestyleJobs) -> None:
    jf, done = jobs.jf, jobs.done("preview")
    assert done["state"] == "succeeded", done
    names = results(jf, done)
    assert set(names) == {"three.restyle.jpg", "three.restyle.json"}
    doc = report(jf, done, "three")
    assert doc["preview"] is True and doc["frames_rendered"] == 3
    assert [(c["start"], c["end"]) for c in doc["checksums"]] == [(8, 9), (18, 19), (26, 27)]  # each shot's middle frame
    from PIL import Image

    sheet = Image.open(io.BytesIO(content(jf, names["three.restyle.jpg"])))
    assert sheet.width > 320 and sheet.height > 100
