"""The local Ray head: reachable with token auth, runs Ray Jobs, stops cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from ray.job_submission import JobStatus

from cluster.local import LocalRayHead, RayHeadError, auth_headers, job_client, ray_reachable
from tests.fixtures.network import HangUpServer

DONE = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
REPO = Path(__file__).resolve().parents[2]


def wait_job(client, job_id: str, timeout: float = 300) -> JobStatus:
    deadline = time.monotonic() + timeout
    while (status := client.get_job_status(job_id)) not in DONE:
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(0.2)
    return status


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ray_tree(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


def test_session_cluster_is_reachable(ray_cluster: LocalRayHead) -> None:
    assert ray_cluster.is_running()
    assert ray_cluster.address.startswith("127.0.0.1:")
    assert ray_cluster.dashboard_url.startswith("http://127.0.0.1:")
    assert ray_reachable(ray_cluster.dashboard_url)


def test_dashboard_requires_the_token(ray_cluster: LocalRayHead) -> None:
    url = f"{ray_cluster.dashboard_url}/api/version"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 403
    assert httpx.get(url, headers=auth_headers(), timeout=5).json()["ray_version"]


def test_ray_job_runs_and_logs(ray_cluster: LocalRayHead) -> None:
    client = job_client(ray_cluster.dashboard_url)
    code = "import ray; ray.init(); print('farm-ok', int(ray.cluster_resources()['CPU']))"
    deadline = time.monotonic() + 120
    while True:  # right after start, Ray may answer "No available agent to submit job, please try again later"
        try:
            job_id = client.submit_job(entrypoint=f'{sys.executable} -c "{code}"')
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert wait_job(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "farm-ok 8" in client.get_job_logs(job_id)


DRIVER = """
import sys
import ray, ray._raylet
assert ray._raylet.get_authentication_mode() == ray._raylet.AuthenticationMode.DISABLED  # cached
from cluster.local import ensure_auth_env
ensure_auth_env()
ray.init(address=sys.argv[1], logging_level="ERROR")
print(ray.get(ray.remote(lambda: "driver-ok").remote()))
"""


def test_driver_connects_to_address_after_ensure_auth_env(ray_cluster: LocalRayHead) -> None:
    """`address` works for ray.init(), even where Ray cached its config before auth was on."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, ray_cluster.address],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "driver-ok" in out.stdout, out.stderr[-3000:]


def test_unreachable_port_is_false_fast() -> None:
    """A refused or dropped connection is False after one attempt: no retry, nothing to wait out."""
    assert not ray_reachable(f"http://127.0.0.1:{unused_port()}", timeout=2.0)
    server = HangUpServer()
    try:
        assert not ray_reachable(f"http://127.0.0.1:{server.port}", timeout=2.0)
    finally:
        server.close()
    assert server.connections == 1


def test_busy_ports_are_a_clear_error(ray_cluster: LocalRayHead) -> None:
    with pytest.raises(RayHeadError, match=f"dashboard port {ray_cluster.dashboard_port} is already in use"):
        LocalRayHead(num_cpus=1, dashboard_port=ray_cluster.dashboard_port).start()
    with pytest.raises(RayHeadError, match=f"head \\(GCS\\) port {ray_cluster.port} is already in use"):
        LocalRayHead(num_cpus=1, port=ray_cluster.port).start()


def test_failed_start_reports_the_ray_log() -> None:
    head = LocalRayHead(num_cpus=1, extra_args=["--no-such-flag"])
    with pytest.raises(RayHeadError, match=r"exited with code(.|\n)*no-such-flag"):
        head.start(timeout=60)
    assert not head.is_running()


def test_second_head_stops_without_touching_the_first(ray_cluster: LocalRayHead) -> None:
    session_core = [p for p in ray_tree(ray_cluster.pid) if p.pid == ray_cluster.pid or p.name() in {"gcs_server", "raylet"}]
    assert len(session_core) == 3

    with LocalRayHead(num_cpus=2) as head:
        assert head.address != ray_cluster.address
        assert ray_reachable(head.dashboard_url)
        # A job still running at stop: its driver lives in a session of its own.
        client = job_client(head.dashboard_url)
        job_id = client.submit_job(entrypoint=f"{sys.executable} -c 'import time; print(\"up\", flush=True); time.sleep(600)'")
        deadline = time.monotonic() + 120
        while "up" not in client.get_job_logs(job_id):
            assert time.monotonic() < deadline, client.get_job_logs(job_id)
            time.sleep(0.2)
        tree = ray_tree(head.pid)
        assert any(p.name() == "gcs_server" for p in tree)
        assert any("time.sleep(600)" in " ".join(p.cmdline()) for p in tree)

    assert not head.is_running()
    assert not ray_reachable(head.dashboard_url)
    leftovers = [p for p in tree if alive(p)]
    assert leftovers == [], leftovers
    assert head.temp_dir is not None and not head.temp_dir.exists()

    assert ray_cluster.is_running()
    assert ray_reachable(ray_cluster.dashboard_url)
    assert all(alive(p) for p in session_core)


ORPHAN = """
import sys, time
from cluster.local import LocalRayHead
head = LocalRayHead(num_cpus=1).start()
print(head.pid, head.temp_dir, flush=True)
time.sleep(600)
"""


def test_head_stops_itself_when_its_owner_dies() -> None:
    owner = subprocess.Popen([sys.executable, "-c", ORPHAN], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()  # type: ignore[union-attr]
        assert line, "the owner process could not start its head"
        pid, temp_dir = line.split()
        tree = ray_tree(int(pid))
    finally:
        owner.kill()  # SIGKILL: no atexit, no stop()
        owner.wait()
    _, survivors = psutil.wait_procs(tree, timeout=30)
    survivors = [p for p in survivors if alive(p)]
    assert survivors == [], survivors
    assert not Path(temp_dir).exists()
