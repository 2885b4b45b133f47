"""`farm demo` — the README's main command — runs end to end (video.shots, then video.restyle on the sample) and exits 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from farm.db import Asset, Database
from pipelines.stages.media.probe import probe
from pipelines.stages.payloads import Source


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(900)
def test_demo_starts_farm_uploads_sample_and_stops(tmp_path: Path) -> None:
    env = {
        **os.environ, "COLUMNS": "200",
        "FARM_API__PORT": str(_free_port()), "FARM_RAY__HEAD_PORT": str(_free_port()),
        "FARM_RAY__DASHBOARD_PORT": str(_free_port()),
    }
    for key in [k for k in env if k in ("FARM_HOME", "FARM_DB__URL", "FARM_RAY__ADDRESS", "FARM_RAY__DASHBOARD_URL")]:
        del env[key]

    def demo() -> str:
        proc = subprocess.run([sys.executable, "-m", "farm.cli.main", "demo"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=480)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    first = demo()
    assert "readyz: ready" in first and "uploaded: video/mp4" in first
    assert "succeeded: 1 of 1 videos done, 0 failed" in first
    assert "4 shots found, cuts at [36, 66, 108] (the sample's cuts: [36, 66, 108])" in first
    out = tmp_path / ".farm" / "demo-output"
    assert f"contact sheet  {Path('.farm') / 'demo-output' / 'sample-shots.contact.jpg'}" in first
    assert (out / "sample-shots.contact.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert json.loads((out / "sample-shots.shots.json").read_text())["frames"] == 132
    assert sorted(p.name for p in out.glob("*.shot-*.mp4")) == [f"sample-shots.shot-00{i}.mp4" for i in range(1, 5)]
    # the restyle ran on the shots video.shots found, every frame, with the sample's sound, and sits beside the source
    assert "succeeded: 1 of 1 videos done" in first.split("video.restyle submitted")[1]
    assert "132 of 132 frames restyled at 224x128, audio kept" in first
    report = json.loads((out / "sample-shots.restyle.json").read_text())
    assert [s["start_frame"] for s in report["shots"]] == [0, 36, 66, 108]
    assert report["output"]["keyframes"][:1] == [0] and report["settings"]["consistency"] == "anchor"
    side = out / "sample-shots.side-by-side.mp4"
    beside = probe(side, Source(0, side.name, path=str(side)))
    assert beside.video.frames == 132 and (beside.video.width, beside.video.height) == (640, 180) and beside.video.has_audio
    assert f"side by side   {Path('.farm') / 'demo-output' / 'sample-shots.side-by-side.mp4'}" in first
    second = demo()
    assert "already present (deduplicated)" in second and "video.shots already split this sample; reusing it" in second
    assert "video.restyle already rendered this sample with these settings; reusing it" in second
    assert (out / "sample-shots.restyled.mp4").is_file() and (out / "sample-shots.side-by-side.mp4").is_file()

    db = Database(f"sqlite:///{tmp_path / '.farm' / 'farm.db'}")
    with db.session() as s:
        assets = s.scalars(select(Asset)).all()
    uploads = [a for a in assets if a.name == "sample-shots.mp4"]
    assert len(uploads) == 1 and uploads[0].kind == "video"
    assert {"sample-shots.shots.json", "sample-shots.edl", "sample-shots.shot-004.jpg"} <= {a.name for a in assets}
    obj = tmp_path / ".farm" / "objects"
    assert any(obj.rglob(uploads[0].id + "*")), "the sample's bytes are in the local object directory"
    assert (tmp_path / ".farm" / "credentials.json").stat().st_mode & 0o077 == 0
