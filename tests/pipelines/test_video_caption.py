"""`video.caption` end to end: uploaded through the API, shots captioned by the tiny VLM on the real Ray cluster.

Bad specs are refused at submit (422 naming the field); then one job carries
everything (jobs cost most of the time here): a 3-shot video
whose shots are detected, another whose shots come from a `shots.json`
asset, a truncated upload and a zero-frame file. What is asserted is what a
user reads: cue times in SRT and WebVTT parsed back with real parsers, the
image tokens in every prompt, which video was decoded for detection, and the
failed items' messages.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import pytest
import srt
import webvtt

from cluster.local import LocalRayHead
from pipelines.stages.backend import run_local
from pipelines.stages.media.synthetic import SyntheticVideo, make_video
from pipelines.stages.payloads import Source
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import find_shots
from pipelines.stages.shots.reports import shots_json
from serve.demo_models import VLM_IMAGE_TOKENS
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm
from tests.fixtures.models import model_cache_dir
from tests.pipelines.test_video_shots import content, item_errors, progress_events, upload

SHOTS = (16, 12, 20)  # cuts at 16 and 28
SPEC: dict[str, Any] = {"min_shot_len": 3, "frames_per_shot": 2, "max_tokens": 8, "model": "tiny-vlm",
                        "prompt": "Shot {shot} of {shots} ({start}s to {end}s): describe it."}


@pytest.fixture
def caption_farm(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path, demo_models: dict[str, Path]) -> Iterator[JobFarm]:
    settings = make_settings(tmp_path, postgres_url, ray_cluster)
    settings.models.cache_dir = model_cache_dir()
    jf = start_job_farm(settings)
    yield jf
    jf.close()
    shutil.rmtree(tmp_path / "home" / "cache", ignore_errors=True)


def seconds(t: timedelta) -> float:
    return t.total_seconds()


def vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def outputs_by_name(jf: JobFarm, job: dict[str, Any]) -> dict[str, bytes]:
    return {jf.clients["a"].get(f"/v1/assets/{o['asset_id']}").json()["name"]: content(jf, o["asset_id"]) for o in job["outputs"]}


def test_captions_per_shot_with_cue_times_image_tokens_and_given_shots(caption_farm: JobFarm, tmp_path: Path) -> None:
    jf = caption_farm
    c, project = jf.clients["a"], jf.projects["a"]
    for field, value, words in (("model", "tiny-sd", "unknown vlm model 'tiny-sd'"), ("frames_per_shot", 0, "greater than or equal to 1"),
                                ("max_tokens", 4096, "less than or equal to 512"), ("prompt", "Shot {number}", "unknown placeholder {number}"),
                                ("frame_short_side", 64, "greater than or equal to 80"),
                                ("shots_asset_ids", [None, None], "shots_asset_ids must align with asset_ids: 2 for 1 videos")):
        r = c.post("/v1/jobs", json={"kind": "video.caption", "project_id": project, "spec": {"asset_ids": ["asset_x"], field: value}})
        assert r.status_code == 422 and "spec" in r.text and field in r.text and words in r.text, (field, r.text)

    detected = make_video(tmp_path / "three.mp4", SHOTS, size=(96, 64), fps=24, seed=3)
    given = make_video(tmp_path / "given.mp4", (10, 14, 8), size=(96, 64), fps=25, seed=4)
    # The given video's shots.json, as a video.shots job writes it (found here, in the test process).
    found, _ = find_shots([Source(0, "given.mp4", path=str(given.path))], DetectorConfig(min_shot_len=3), run=run_local)
    doc = shots_json(found[0].probed.video, found[0].shots, found[0].transitions, {"kind": "content"})
    (tmp_path / "given.shots.json").write_bytes(doc)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(detected.path.read_bytes()[: detected.path.stat().st_size // 2])
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()  # a header, no frames

    ids = [upload(jf, p) for p in (detected.path, given.path, truncated, empty)]
    shots_asset = upload(jf, tmp_path / "given.shots.json")
    job = jf.submit(kind="video.caption", spec={**SPEC, "asset_ids": ids, "shots_asset_ids": [None, shots_asset, None, None]})
    done = jf.wait_done(job["id"], timeout=600)
    assert done["state"] == "succeeded" and done["counts"] == {"total": 4, "succeeded": 2, "failed": 2}, done
    errors = item_errors(jf, job["id"])
    assert "corrupt or truncated" in (errors[2] or "") and "no video frames" in (errors[3] or ""), errors

    files = outputs_by_name(jf, done)
    assert {"three.captions.json", "three.captions.srt", "three.captions.vtt", "given.captions.json"} <= set(files)
    assert {(o["item"], o["output"], o["type"]) for o in done["outputs"] if o["item"] == 0} == {
        (0, "captions", "captions"), (0, "srt", "captions"), (0, "vtt", "captions")}

    for stem, video, fps in (("three", detected, 24), ("given", given, 25)):
        captions = json.loads(files[f"{stem}.captions.json"])
        shots = captions["shots"]
        bounds = [0, *video.starts, video.frames]
        assert [(s["start_frame"], s["end_frame"]) for s in shots] == list(zip(bounds, bounds[1:])), stem
        assert [s["start_time"] for s in shots] == pytest.approx([b / fps for b in bounds[:-1]])
        # Two frames per shot reached the model: every prompt holds both images' tokens, and more (the text).
        assert all(s["image_tokens"] == 2 * VLM_IMAGE_TOKENS < s["prompt_tokens"] for s in shots), shots
        assert all(len(s["sampled_frames"]) == 2 and s["start_frame"] <= min(s["sampled_frames"]) for s in shots)
        # SRT and WebVTT, read back with real parsers: one cue per shot at the shot's times (to the millisecond).
        cues = list(srt.parse(files[f"{stem}.captions.srt"].decode()))
        vtt = list(webvtt.from_buffer(io.StringIO(files[f"{stem}.captions.vtt"].decode())))
        assert len(cues) == len(vtt) == len(shots) == 3
        for shot, cue, vcue in zip(shots, cues, vtt):
            assert seconds(cue.start) == pytest.approx(shot["start_time"], abs=5e-4) == vtt_seconds(vcue.start)
            assert seconds(cue.end) == pytest.approx(shot["end_time"], abs=5e-4) == vtt_seconds(vcue.end)
            assert cue.content == vcue.text and "\n" not in cue.content and cue.content.strip()

    three, from_asset = json.loads(files["three.captions.json"]), json.loads(files["given.captions.json"])
    assert three["shots_from"] == {"source": "detected", "frames_decoded": detected.frames}
    assert from_asset["shots_from"]["source"] == "shots_asset" and from_asset["shots_from"]["asset_id"] == shots_asset
    assert from_asset["shots_from"]["frames_decoded"] == 0
    # The pipeline's own record: detection decoded the one video without a shots.json, and only it.
    events = progress_events(jf, job["id"])
    shots_phase = next(e for e in events if e.get("phase") == "shots")
    assert shots_phase["videos_detected"] == 3 and shots_phase["shots_from_assets"] == 1
    assert shots_phase["detection_frames_decoded"] == detected.frames  # the truncated and empty ones fail before decoding
    # Shots were answered in batches, not one engine call per shot.
    captioned = [e for e in events if "shots_captioned" in e]
    assert three["mean_batch_size"] > 1 and captioned[-1]["shots_captioned"] == captioned[-1]["shots_total"] == 6
