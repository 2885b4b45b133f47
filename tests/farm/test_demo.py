"""`farm demo` — the README's main command — runs end to end (video.shots on the sample) and exits 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from farm.db import Asset, Database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
                              capture_output=True, text=True, timeout=300)
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
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"sample-shots.shot-00{i}.mp4" for i in range(1, 5)]
    second = demo()
    assert "already present (deduplicated)" in second and "succeeded: 1 of 1 videos done" in second

    db = Database(f"sqlite:///{tmp_path / '.farm' / 'farm.db'}")
    with db.session() as s:
        assets = s.scalars(select(Asset)).all()
    uploads = [a for a in assets if a.name == "sample-shots.mp4"]
    assert len(uploads) == 1 and uploads[0].kind == "video"
    assert {"sample-shots.shots.json", "sample-shots.edl", "sample-shots.shot-004.jpg"} <= {a.name for a in assets}
    obj = tmp_path / ".farm" / "objects"
    assert any(obj.rglob(uploads[0].id + "*")), "the sample's bytes are in the local object directory"
    assert (tmp_path / ".farm" / "credentials.json").stat().st_mode & 0o077 == 0
