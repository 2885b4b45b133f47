"""`video.restyle` end to end: uploaded through the API, rendered by the tiny diffusion model on the real Ray cluster.

Every job here renders small videos (96x64, 32 frames, short side 64, 4
steps at strength 0.5: 2 denoising steps per frame) so the whole file stays
within a few minutes on two cores; what is asserted does not depend on size:
frames, timestamps and audio kept, cuts kept, determinism across chunk
layouts, resumption after a killed runner, preview, bad input.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
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
from tests.pipelines.conftest import audio_samples, vfr_copy
from tests.pipelines.test_video_shots import content, item_errors, progress_events, upload

# Chunks of 8: the cut at 16 falls exactly on a chunk boundary, the 5-frame shot is shorter than a chunk.
SHOTS = (16, 5, 11)
CUTS = (16, 21)
SPEC: dict[str, Any] = {
    "prompt": "a watercolor painting", "short_side": 64, "steps": 4, "strength": 0.5, "chunk_size": 8,
    "min_shot_len": 3, "model": "tiny-sd",
}


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    return make_video(tmp_path_factory.mktemp("restyle") / "three.mp4", SHOTS, size=(96, 64), fps=24, audio=True, seed=3)


@pytest.fixture(scope="module")
def vfr_video(three_shots: SyntheticVideo) -> Path:
    """The same pictures, no audio, frames lasting 1/60 s to 1/10 s."""
    deltas = np.random.default_rng(5).choice([1500, 2000, 3750, 6000, 9000], size=three_shots.frames)
    return vfr_copy(three_shots.path, three_shots.path.with_name("vfr.mp4"), deltas)


@pytest.fixture
def restyle_farm(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path, demo_models: dict[str, Path]) -> Iterator[JobFarm]:
    # Two jobs at a time: each job runs two to four engine actors, and four jobs at once on two cores
    # spend their time switching between sixteen of them.
    settings = make_settings(tmp_path, postgres_url, ray_cluster, max_running=2)
    settings.models.cache_dir = model_cache_dir()
    jf = start_job_farm(settings)
    yield jf
    jf.close()
    shutil.rmtree(tmp_path / "home" / "cache", ignore_errors=True)


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


def test_restyle_keeps_frames_timing_audio_and_cuts(restyle_farm: JobFarm, three_shots: SyntheticVideo, vfr_video: Path,
                                                   tmp_path: Path) -> None:
    jf = restyle_farm
    ids = [upload(jf, three_shots.path), upload(jf, vfr_video)]
    job = jf.submit(kind="video.restyle", spec={**SPEC, "asset_ids": ids})
    done = jf.wait_done(job["id"], timeout=600)
    assert done["state"] == "succeeded" and done["counts"] == {"total": 2, "succeeded": 2, "failed": 0}, done
    names = results(jf, done)
    assert {"three.restyled.mp4", "three.restyle.jpg", "three.restyle.json", "vfr.restyled.mp4", "vfr.restyle.jpg", "vfr.restyle.json"} <= set(names)
    by_output = {(o["item"], o["output"]): o["type"] for o in done["outputs"]}
    assert by_output[(0, "video")] == "video" and by_output[(1, "contact_sheet")] == "image" and by_output[(1, "report")] == "report"

    for stem, source, audio in (("three", three_shots.path, True), ("vfr", vfr_video, False)):
        out = download(jf, names[f"{stem}.restyled.mp4"], tmp_path / f"{stem}-out.mp4")
        src, got = probe(source, Source(0, stem, path=str(source))), probe(out, Source(0, stem, path=str(out)))
        assert got.video.frames == src.video.frames == sum(SHOTS)
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
        assert len(checksums(doc)) == sum(SHOTS) and doc["output"]["frames"] == sum(SHOTS)
        assert [(s["start_frame"], s["end_frame"]) for s in doc["shots"]] == [(0, 16), (16, 21), (21, 32)]
        assert doc["flicker"] is not None and doc["flicker"] > 0
        assert content(jf, names[f"{stem}.restyle.jpg"])[:3] == b"\xff\xd8\xff"

    # Chunks within shots: 0-8, 8-16 | 16-21 | 21-29, 29-32; rendered on more than one engine process.
    chunk_rows = [p for p in parts(jf, done["id"]) if p.item == 0]
    assert [(p.data["start"], p.data["end"]) for p in chunk_rows] == [(0, 8), (8, 16), (16, 21), (21, 29), (29, 32)]
    workers = {p.worker for p in parts(jf, done["id"])}
    assert len(workers) >= 2, f"all chunks rendered by one worker process: {workers}"
    assert all(p.object_key is None for p in parts(jf, done["id"])), "chunk files are dropped once the video is joined"

    progress = [e for e in progress_events(jf, done["id"]) if "frames_rendered" in e]
    rendered = [e["frames_rendered"] for e in progress]
    assert rendered == sorted(rendered) and progress[-1]["frames_total"] == 2 * sum(SHOTS) == rendered[-1]


def test_same_frames_for_any_chunk_layout_and_anchored_seeds_flicker_less(restyle_farm: JobFarm, three_shots: SyntheticVideo) -> None:
    """Determinism (a second run with another chunk size) and consistency (per-shot + anchor against per-frame seeds).

    The margin: with random weights the model barely reads its input, so
    each frame's look comes from its noise. Per-shot seeds give every frame
    of a shot the same noise and the anchor the same attention context, so
    consecutive frames differ about as little as the source does; per-frame
    seeds draw new noise every frame, a new picture each time. The measured
    gap is tens of times; the test asks for 4x.
    """
    jf = restyle_farm
    video = upload(jf, three_shots.path)
    specs = {
        "first": SPEC, "chunks of 3": {**SPEC, "chunk_size": 3},
        "per frame": {**SPEC, "seed_policy": "per_frame", "consistency": "none"},
    }
    jobs = {name: jf.submit(kind="video.restyle", spec={**spec, "asset_ids": [video]}) for name, spec in specs.items()}
    docs = {}
    for name, job in jobs.items():
        done = jf.wait_done(job["id"], timeout=600)
        assert done["state"] == "succeeded", (name, done)
        docs[name] = report(jf, done, "three")
    first = checksums(docs["first"])
    assert len(first) == sum(SHOTS) and len(set(first)) > 1
    # Another run with frames at other batch positions gives the same frames: rerunning the same job is the easier case.
    assert checksums(docs["chunks of 3"]) == first, "rendered frames differ between chunk layouts"
    assert len(docs["chunks of 3"]["chunks"]) == 6 + 2 + 4  # frames land at other batch positions than with chunks of 8
    assert docs["first"]["flicker"] * 4 < docs["per frame"]["flicker"], (docs["first"]["flicker"], docs["per frame"]["flicker"])


def test_killed_runner_renders_only_missing_chunks(restyle_farm: JobFarm, three_shots: SyntheticVideo) -> None:
    jf = restyle_farm
    video = upload(jf, three_shots.path)
    spec = {**SPEC, "asset_ids": [video], "chunk_size": 2, "steps": 16}  # 17 chunks of 8 denoising steps: time to kill mid-render
    job = jf.submit(kind="video.restyle", spec=spec)
    deadline = time.monotonic() + 300
    while len(before := parts(jf, job["id"])) < 2:
        assert time.monotonic() < deadline and jf.job(job["id"])["state"] in ("queued", "running"), jf.job(job["id"])
        time.sleep(0.05)
    with jf.farm.db.session() as s:
        pid = s.get(Job, job["id"]).runner_pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    done = jf.wait_done(job["id"], timeout=600)
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert len(before) < 17, "the runner finished before it could be killed"
    after = {p.part: p for p in parts(jf, job["id"])}
    assert len(after) == 8 + 3 + 6
    assert all(after[p.part].attempt == 1 for p in before), "a chunk done before the kill was rendered again"
    again = [p for p in after.values() if p.attempt == 2]
    assert again and {p.part for p in again}.isdisjoint({p.part for p in before})

    # The uninterrupted run renders in chunks of 8 (faster): frames do not depend on the chunk layout (test above).
    whole = jf.wait_done(jf.submit(kind="video.restyle", spec={**spec, "chunk_size": 8})["id"], timeout=600)
    assert whole["state"] == "succeeded"
    assert checksums(report(jf, done, "three")) == checksums(report(jf, whole, "three"))


def test_preview_renders_one_keyframe_per_shot_and_no_video(restyle_farm: JobFarm, three_shots: SyntheticVideo) -> None:
    jf = restyle_farm
    job = jf.submit(kind="video.restyle", spec={**SPEC, "asset_ids": [upload(jf, three_shots.path)], "preview": True})
    done = jf.wait_done(job["id"], timeout=600)
    assert done["state"] == "succeeded", done
    names = results(jf, done)
    assert set(names) == {"three.restyle.jpg", "three.restyle.json"}
    doc = report(jf, done, "three")
    assert doc["preview"] is True and doc["frames_rendered"] == 3
    assert [(c["start"], c["end"]) for c in doc["checksums"]] == [(8, 9), (18, 19), (26, 27)]  # each shot's middle frame
    from PIL import Image

    sheet = Image.open(io.BytesIO(content(jf, names["three.restyle.jpg"])))
    assert sheet.width > 320 and sheet.height > 100


def test_bad_input(restyle_farm: JobFarm, three_shots: SyntheticVideo, tmp_path: Path) -> None:
    jf = restyle_farm
    c, project = jf.clients["a"], jf.projects["a"]
    good = upload(jf, three_shots.path)
    for field, value, words in (("model", "no-such-model", "unknown diffusion model"), ("strength", 1.5, "less than or equal to 1"),
                                ("steps", 0, "greater than or equal to 1"), ("short_side", 100, "multiple of 8")):
        r = c.post("/v1/jobs", json={"kind": "video.restyle", "project_id": project, "spec": {**SPEC, "asset_ids": [good], field: value}})
        assert r.status_code == 422 and f"spec.{field}" in r.text and words in r.text, (field, r.text)

    broken = tmp_path / "broken.mp4"
    data = three_shots.path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()  # a header, no frames
    ids = [good, upload(jf, broken), upload(jf, empty)]
    job = jf.submit(kind="video.restyle", spec={**SPEC, "asset_ids": ids, "max_frames": 40})
    done = jf.wait_done(job["id"], timeout=600)
    assert done["state"] == "succeeded" and done["counts"] == {"total": 3, "succeeded": 1, "failed": 2}, done
    errors = item_errors(jf, job["id"])
    assert "corrupt or truncated" in (errors[1] or "") and "no video frames" in (errors[2] or ""), errors

    limited = jf.wait_done(jf.submit(kind="video.restyle", spec={**SPEC, "asset_ids": [good], "max_frames": 20})["id"], timeout=600)
    assert limited["counts"]["failed"] == 1
    assert "32 frames, more than this job's max_frames (20)" in (item_errors(jf, limited["id"])[0] or "")


def test_cancelled_job_leaves_no_chunk_files(restyle_farm: JobFarm, three_shots: SyntheticVideo) -> None:
    jf = restyle_farm
    spec = {**SPEC, "asset_ids": [upload(jf, three_shots.path)], "chunk_size": 2, "steps": 16}
    job = jf.submit(kind="video.restyle", spec=spec)
    deadline = time.monotonic() + 300
    while not (rows := parts(jf, job["id"])):
        assert time.monotonic() < deadline, jf.job(job["id"])
        time.sleep(0.05)
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
