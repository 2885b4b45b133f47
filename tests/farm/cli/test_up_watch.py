"""`farm up` in the foreground, then `farm jobs submit` / `farm jobs watch` from another shell."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_terminal(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, as a person would see it, and return its screen text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", "replace")


def test_watch_shows_live_progress_against_farm_up(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "FARM_HOME": str(tmp_path / "home"), "FARM_API__PORT": str(port),
           "FARM_RAY__HEAD_PORT": str(_free_port()), "FARM_RAY__DASHBOARD_PORT": str(_free_port()),
           "COLUMNS": "120", "TERM": "xterm"}
    for k in ("FARM_DB__URL", "FARM_RAY__ADDRESS", "FARM_RAY__DASHBOARD_URL", "FARM_API_KEY", "FARM_URL"):
        env.pop(k, None)
    up = subprocess.Popen([sys.executable, "-m", "farm.cli.main", "up"], env=env, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            time.sleep(0.3)
        else:
            raise AssertionError("farm up did not become ready")

        def farm(*args: str) -> str:
            r = subprocess.run([sys.executable, "-m", "farm.cli.main", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        project = json.loads(farm("projects", "create", "shots", "--json"))
        job = json.loads(farm("jobs", "submit", "debug.sleep", "-p", project["id"], "--set", "items=30", "--set", "delay_s=0.1", "--json"))
        code, screen = _in_terminal([sys.executable, "-m", "farm.cli.main", "jobs", "watch", job["id"]], env, tmp_path)
        assert code == 0, screen
        seen = {int(m) for m in re.findall(r"(\d+)/30", screen)}
        assert 30 in seen and len(seen) >= 3, f"expected several progress updates, saw {sorted(seen)}"
        assert "succeeded: 30 succeeded, 0 failed of 30" in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)
    finally:
        head_pids = [p.pid for p in psutil.Process(up.pid).children(recursive=True)]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    time.sleep(1)
    assert not [p for p in head_pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE], "Ctrl-C left processes behind"
