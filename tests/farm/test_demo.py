"""`farm demo` — the README's main command — runs the `footage` workflow on the sample end to end, exits 0, and a re-run reuses the run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import webvtt
from sqlalchemy import select

from farm.db import Asset, Database
from farm.db.models import Job
from farm.jobs.outputs import outputs_of
from pipelines.stages.media.probe import probe
from pipelines.stages.payloads import Source

OUT = Path(".farm") / "demo-output"  # as the demo prints it: relative to where it ran


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(1300)
def test_demo_runs_the_footage_workflow_on_the_sample_and_reuses_it(tmp_path: Path) -> None:
    env = {
        **os.environ, "COLUMNS": "200",
        "FARM_API__PORT": str(_free_port()), "FARM_RAY__HEAD_PORT": str(_free_port()),
        "FARM_RAY__DASHBOARD_PORT": str(_free_port()),
    }
    for key in [k for k in env if k in ("FARM_HOME", "FARM_DB__URL", "FARM_RAY__ADDRESS", "FARM_RAY__DASHBOARD_URL")]:
        del env[key]

    def demo() -> str:
        proc = subprocess.run([sys.executable, "-m", "farm.cli.main", "demo"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    first = demo()
    assert "readyz: ready" in first and "uploaded: video/mp4" in first
    run_id = re.search(r"Run (job_\w+) footage submitted: shots \(video.shots\) → restyle \(video.restyle\) → caption \(video.caption\)",
                       first)
    assert run_id, first
    assert f"Run {run_id[1]} succeeded: 3 of 3 steps ended" in first
    # per step: its job, state and counts, then each output's assets and the files they were downloaded to
    printed = dict(re.findall(r"Step (\w+) video\.\w+ job (job_\w+) succeeded: 1 of 1 videos done, 0 failed", first))
    assert list(printed) == ["shots", "restyle", "caption"], first
    db = Database(f"sqlite:///{tmp_path / '.farm' / 'farm.db'}")
    with db.session() as s:
        run = s.get(Job, run_id[1])
        assert run is not None and run.kind == "workflow" and run.state == "succeeded"
        children = {j.kind: j for j in s.scalars(select(Job).where(Job.parent_id == run.id))}
        assert {k: (j.id, j.state) for k, j in children.items()} == {
            "video.shots": (printed["shots"], "succeeded"), "video.restyle": (printed["restyle"], "succeeded"),
            "video.caption": (printed["caption"], "succeeded")}
        produced = {(step, o.output): o.asset_id for step in printed for o in outputs_of(s, printed[step])}
        names = {a.id: a.name for a in s.scalars(select(Asset))}
    for (step, output), asset_id in produced.items():
        line = next((ln for ln in first.splitlines() if ln.strip().startswith(f"{step}.{output} ")), "")
        assert asset_id in line and f"→ {OUT}/" in line, (step, output, first)
        assert (tmp_path / OUT / names[asset_id]).is_file(), names[asset_id]
    assert re.search(rf"restyle\.video +{produced['restyle', 'video']} +→ {re.escape(str(OUT / 'sample-shots.restyled.mp4'))}", first)
    assert f"→ {OUT / 'sample-shots.restyled.captions.vtt'}" in first

    # shots: the sample's cuts, the contact sheet, the shot list and one clip per shot
    out = tmp_path / OUT
    assert "4 shots found, cuts at [36, 66, 108] (the sample's cuts: [36, 66, 108])" in first
    assert f"contact sheet  {OUT / 'sample-shots.contact.jpg'}" in first
    assert (out / "sample-shots.contact.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert json.loads((out / "sample-shots.shots.json").read_text())["frames"] == 132
    assert sorted(p.name for p in out.glob("*.shot-*.mp4")) == [f"sample-shots.shot-00{i}.mp4" for i in range(1, 5)]
    # restyle: on the shots step's shots, every frame, with the sample's sound, beside the source
    assert children["video.restyle"].spec["shots_asset_ids"] == [produced["shots", "shots"]]
    assert "132 of 132 frames restyled at 224x128, audio kept" in first
    report = json.loads((out / "sample-shots.restyle.json").read_text())
    assert [s["start_frame"] for s in report["shots"]] == [0, 36, 66, 108]
    assert report["output"]["keyframes"][:1] == [0] and report["settings"]["consistency"] == "anchor"
    side = out / "sample-shots.side-by-side.mp4"
    beside = probe(side, Source(0, side.name, path=str(side)))
    assert beside.video.frames == 132 and (beside.video.width, beside.video.height) == (640, 180) and beside.video.has_audio
    assert f"side by side   {OUT / 'sample-shots.side-by-side.mp4'}" in first
    # caption: the restyled video, one cue per shot at the shots' times, with the shots step's list (no second detection)
    assert children["video.caption"].spec["asset_ids"] == [produced["restyle", "video"]]
    cues = webvtt.read(str(out / "sample-shots.restyled.captions.vtt"))
    assert [(c.identifier, c.start) for c in cues] == [
        ("shot-001", "00:00:00.000"), ("shot-002", "00:00:01.500"), ("shot-003", "00:00:02.750"), ("shot-004", "00:00:04.500")]
    assert all(c.text.strip() for c in cues)
    captions = json.loads((out / "sample-shots.restyled.captions.json").read_text())
    assert captions["shots_from"]["source"] == "shots_asset" and len(captions["shots"]) == 4
    assert (out / "sample-shots.restyled.captions.srt").read_text().count(" --> ") == 4
    assert "4 captions of the restyled video by tiny-vlm, one cue per shot" in first

    second = demo()
    assert "already present (deduplicated)" in second
    assert f"Run {run_id[1]} footage already ran on this sample with these parameters" in second
    assert "reusing the finished run" in second and "submitted" not in second
    assert dict(re.findall(r"Step (\w+) video\.\w+ job (job_\w+) succeeded", second)) == printed
    assert (out / "sample-shots.restyled.mp4").is_file() and (out / "sample-shots.side-by-side.mp4").is_file()
    assert (out / "sample-shots.restyled.captions.vtt").is_file()
    with db.session() as s:
        jobs = s.scalars(select(Job)).all()
        assets = s.scalars(select(Asset)).all()
    assert sorted(j.kind for j in jobs) == ["video.caption", "video.restyle", "video.shots", "workflow"], "nothing recomputed"
    uploads = [a for a in assets if a.name == "sample-shots.mp4"]
    assert len(uploads) == 1 and uploads[0].kind == "video"
    assert {"sample-shots.shots.json", "sample-shots.edl", "sample-shots.shot-004.jpg"} <= {a.name for a in assets}
    obj = tmp_path / ".farm" / "objects"
    assert any(obj.rglob(uploads[0].id + "*")), "the sample's bytes are in the local object directory"
    assert (tmp_path / ".farm" / "credentials.json").stat().st_mode & 0o077 == 0
