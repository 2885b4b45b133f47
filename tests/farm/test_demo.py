"""`farm demo` — the README's main command — runs end to end and exits 0."""

from __future__ import annotations

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
    second = demo()
    assert "already present (deduplicated)" in second

    db = Database(f"sqlite:///{tmp_path / '.farm' / 'farm.db'}")
    with db.session() as s:
        assets = s.scalars(select(Asset)).all()
    assert len(assets) == 1 and assets[0].kind == "video"
    obj = tmp_path / ".farm" / "objects"
    assert any(obj.rglob(assets[0].id + "*")), "the sample's bytes are in the local object directory"
    assert (tmp_path / ".farm" / "credentials.json").stat().st_mode & 0o077 == 0
