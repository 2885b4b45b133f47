"""The `farm` command against a running control plane, as a user would type it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.local import LocalRayHead
from farm.embedded import EmbeddedFarm
from farm.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def __call__(self, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "farm.cli.main", *args], env={**self.env, **env}, cwd=self.cwd,
            capture_output=True, text=True, timeout=120,
        )
        if ok:
            assert proc.returncode == 0, f"farm {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc


@pytest.fixture
def cli(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> Iterator[Cli]:
    port = _free_port()
    env = {
        **os.environ, "FARM_HOME": str(tmp_path / "home"), "FARM_DB__URL": postgres_url,
        "FARM_API__PORT": str(port), "FARM_RAY__DASHBOARD_URL": ray_cluster.dashboard_url,
        "COLUMNS": "200",
    }
    env.pop("FARM_API_KEY", None)
    settings = Settings(home=tmp_path / "home", db={"url": postgres_url}, api={"port": port},
                        ray={"dashboard_url": ray_cluster.dashboard_url})
    with EmbeddedFarm(settings):
        yield Cli(env, tmp_path)


def test_bootstrap_projects_assets_keys(cli: Cli, tmp_path: Path) -> None:
    out = cli("admin", "create-org", "studio").stdout
    key = re.search(r"sk_farm_\w+", out)
    assert key, out
    cli.env["FARM_API_KEY"] = key.group(0)
    assert "already exists" in cli("admin", "create-org", "studio", ok=False).stderr

    project = json.loads(cli("projects", "create", "trailer", "--json").stdout)
    assert project["name"] == "trailer"
    assert "trailer" in cli("projects", "list").stdout

    src = tmp_path / "clip.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    up = cli("assets", "upload", project["id"], str(src), "--json")
    asset = json.loads(up.stdout)[0]
    assert asset["size"] == src.stat().st_size
    again = cli("assets", "upload", project["id"], str(src))
    assert "identical content" in again.stdout

    listed = json.loads(cli("assets", "list", project["id"], "--json").stdout)
    assert [a["id"] for a in listed] == [asset["id"]]
    dest = tmp_path / "back.bin"
    cli("assets", "download", asset["id"], "--out", str(dest))
    assert dest.read_bytes() == src.read_bytes()

    viewer = json.loads(cli("keys", "create", "ro", "--role", "viewer", "--json").stdout)
    denied = cli("projects", "create", "nope", ok=False, FARM_API_KEY=viewer["key"])
    assert denied.returncode == 1 and "403 permission_denied" in denied.stderr
    cli("keys", "revoke", viewer["id"])
    gone = cli("projects", "list", ok=False, FARM_API_KEY=viewer["key"])
    assert "401" in gone.stderr


def test_clear_error_without_key_or_server(cli: Cli) -> None:
    r = cli("projects", "list", ok=False)
    assert r.returncode == 1 and "no API key" in r.stderr
    r = cli("projects", "list", ok=False, FARM_API_KEY="sk_farm_x", FARM_URL="http://127.0.0.1:9")
    assert r.returncode == 1 and "cannot reach the farm" in r.stderr


def test_db_upgrade_command(cli: Cli) -> None:
    from alembic.script import ScriptDirectory

    from farm.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert f"revision {head}" in cli("db", "upgrade").stdout
