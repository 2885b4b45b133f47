"""The local single-machine Ray cluster behind `farm up` and the tests.

`LocalRayHead` runs ``ray start --head --block`` as a child process that we
own, in its own session and process group, with its own short temp dir and
free (or given) ports; the dashboard listens on loopback only. Stopping it
stops that tree and nothing else: no global ``ray stop``, so other Ray
clusters on the machine are untouched. If our process dies without stopping
it, the head notices and stops itself.

Token auth stays on. Ray 2.60 reads the mode from ``RAY_AUTH_MODE`` and the
token from ``RAY_AUTH_TOKEN``, else the file at ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``; HTTP clients (the dashboard and the Jobs API) send it as
``Authorization: Bearer <token>``. `ensure_auth_env` makes sure the mode is set
and a token exists; `auth_headers`, `ray_reachable` and `job_client` send it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import httpx
import psutil

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

LOOPBACK = "127.0.0.1"
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"
# Ray puts unix sockets at <temp>/session_<date>_<usec>_<pid>/sockets/plasma_store;
# that suffix is ~65 characters and sun_path holds 107, so keep the root short.
MAX_TEMP_ROOT_LEN = 40

# Environment of the head and everything it spawns (raylet, workers, job drivers).
# Not set: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which would keep the node IP at
# 127.0.0.1 and bind the GCS to loopback only. Every client's ray.init() turns
# "127.0.0.1" into the machine's routable IP unless it has that variable too,
# and then hangs on a GCS it cannot reach. Token auth guards the GCS instead.
HEAD_ENV = {
    "RAY_AUTH_MODE": "token",
    # On SIGTERM Ray drains the node through the GCS first (up to 30 s); for a
    # one-node cluster that is going away as a whole there is nothing to drain to.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayHeadError(RuntimeError):
    """The local Ray head could not be started."""


# --- token auth ---------------------------------------------------------------


def auth_token() -> str | None:
    """The token Ray would use, by Ray's precedence; None if there is none."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    if path := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise RuntimeError(f"RAY_AUTH_TOKEN_PATH={path} cannot be read: {exc}") from exc
        if not token:
            raise RuntimeError(f"RAY_AUTH_TOKEN_PATH={path} is empty")
        return token
    try:
        return DEFAULT_TOKEN_PATH.read_text().strip() or None
    except FileNotFoundError:
        return None


def auth_headers() -> dict[str, str]:
    """HTTP headers that authenticate to a Ray dashboard / Jobs API."""
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def ensure_auth_env() -> str:
    """Turn token auth on for this process and its children; return the token.

    Sets ``RAY_AUTH_MODE=token`` and, where no token exists anywhere Ray looks,
    writes a new one to ``~/.ray/auth_token`` (mode 0600), as ``ray.init()``
    does for a new local cluster. Safe to call more than once.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    token = auth_token()
    if token is None:
        token = _create_default_token()
    _refresh_ray_config()
    return token


def _create_default_token() -> str:
    DEFAULT_TOKEN_PATH.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    try:
        fd = os.open(DEFAULT_TOKEN_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its token
        return DEFAULT_TOKEN_PATH.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def _refresh_ray_config() -> None:
    """Make an already-imported Ray see the auth mode set after it cached its config."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is None:
        return  # Ray reads the environment when it first loads its config
    import ray

    if ray.is_initialized() or raylet.get_authentication_mode() == raylet.AuthenticationMode.TOKEN:
        return
    raylet.Config.initialize("")  # what Ray itself does when it turns token auth on


def ray_reachable(dashboard_url: str, timeout: float = 2.0) -> bool:
    """True if the Ray dashboard at `dashboard_url` answers an authenticated request.

    A cheap probe for readiness checks: one GET of ``/api/version`` with the
    token. False on refusal, timeout, or a 401/403 (wrong or missing token).
    """
    url = dashboard_url.rstrip("/") + "/api/version"
    try:
        response = httpx.get(url, headers=auth_headers(), timeout=timeout)
    except (httpx.HTTPError, OSError, ValueError, RuntimeError):
        return False
    return response.status_code == 200


def job_client(dashboard_url: str) -> JobSubmissionClient:
    """A Ray Jobs client for `dashboard_url` that sends the auth token."""
    ensure_auth_env()
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url.rstrip("/"), headers=auth_headers())


# --- the local head -------------------------------------------------------------


class LocalRayHead:
    """A Ray head on this machine, started and stopped by us.

    >>> with LocalRayHead(num_cpus=8) as head:
    ...     job_client(head.dashboard_url).submit_job(entrypoint="...")

    Ports left as None are picked free; `temp_root` (short, see
    MAX_TEMP_ROOT_LEN) holds a fresh temp dir per instance, removed on stop.
    """

    def __init__(
        self,
        num_cpus: int = 8,
        *,
        num_gpus: int | None = None,
        port: int | None = None,
        dashboard_port: int | None = None,
        temp_root: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.port = port
        self.dashboard_port = dashboard_port
        self.temp_root = Path(temp_root) if temp_root else _short_temp_root()
        if len(str(self.temp_root)) > MAX_TEMP_ROOT_LEN:
            raise ValueError(f"temp_root {self.temp_root} is too long for Ray's unix sockets (max {MAX_TEMP_ROOT_LEN} chars)")
        self.extra_args = list(extra_args)
        self.temp_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """GCS address for ``ray.init(address=...)`` and worker nodes."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """Dashboard and Jobs API."""
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    @property
    def pid(self) -> int | None:
        """Pid of the ``ray start`` process (leader of the head's process group)."""
        return self._proc.pid if self._proc else None

    @property
    def log_path(self) -> Path | None:
        return self.temp_dir / "head.log" if self.temp_dir else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90.0) -> LocalRayHead:
        """Start the head and wait until its Jobs API answers."""
        if self._proc is not None:
            raise RuntimeError("this LocalRayHead is already started")
        ensure_auth_env()
        self.port = self.port or _free_port()
        self.dashboard_port = self.dashboard_port or _free_port(exclude={self.port})
        client_port = _free_port(exclude={self.port, self.dashboard_port})
        for what, p, host in (("head (GCS)", self.port, ""), ("dashboard", self.dashboard_port, LOOPBACK)):
            if not _port_free(p, host):
                raise RayHeadError(f"{what} port {p} is already in use")

        self.temp_root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir=self.temp_root))
        # fmt: off
        cmd = [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(self.temp_dir), "start", "--head", "--block",
            "--num-cpus", str(self.num_cpus),
            "--port", str(self.port),
            "--include-dashboard", "true",
            "--dashboard-host", LOOPBACK,
            "--dashboard-port", str(self.dashboard_port),
            "--dashboard-agent-listen-port", "0",
            "--ray-client-server-port", str(client_port),
            "--temp-dir", str(self.temp_dir),
            "--disable-usage-stats",
        ]
        # fmt: on
        if self.num_gpus is not None:
            cmd += ["--num-gpus", str(self.num_gpus)]
        cmd += self.extra_args
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | HEAD_ENV
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except (RayHeadError, TimeoutError):
            reason = self._failure_report()
            self.stop()
            raise RayHeadError(reason) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        url = self.dashboard_url + "/api/jobs/"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RayHeadError("exited")
            try:
                if httpx.get(url, headers=auth_headers(), timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError

    def _failure_report(self) -> str:
        assert self._proc is not None
        code = self._proc.poll()
        what = f"exited with code {code}" if code is not None else "did not answer its Jobs API in time"
        parts = [f"Ray head ({self.dashboard_url}, GCS {self.address}) {what}."]
        assert self.temp_dir is not None
        logs = [self.log_path, *sorted(self.temp_dir.glob("session_*/logs/dashboard.log"))]
        for path in logs:
            if path and path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the head and every process it started; idempotent.

        SIGTERM goes to the ``ray start`` leader, which shuts Ray down in
        order (raylet and its workers first, then GCS, dashboard...). Whatever
        is left after `timeout` (including workers and job drivers in their
        own process groups) gets SIGTERM, then SIGKILL.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        tree = _process_tree(proc.pid)
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # leader not reaped yet: the group is still ours
                proc.wait()
        # The leader is reaped, so its pid (= our pgid) may be reused from now on:
        # only processes that already existed can be ours.
        _end(tree + _group_members(proc.pid, created_before=time.time()))
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayHead:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalRayHead({self.address}, {self.dashboard_url}, {state})"


# `ray start`, plus a watchdog: if the process that started the head dies
# without stopping it (SIGKILL, a crash), the head stops itself and removes its
# temp dir instead of living on as an orphan.
# argv: <parent pid> <temp dir> <ray CLI arguments...>
_LAUNCHER = """
import os, shutil, signal, sys, threading, time
import psutil
parent, temp_dir = int(sys.argv.pop(1)), sys.argv.pop(1)
orphaned = []
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    orphaned.append(psutil.Process().children(recursive=True))
    os.kill(os.getpid(), signal.SIGTERM)
def alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "ray"
from ray.scripts.scripts import main
try:
    main()
finally:
    if orphaned:
        deadline = time.monotonic() + 5
        while any(map(alive, orphaned[0])) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in filter(alive, orphaned[0]):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)
"""


def _short_temp_root() -> Path:
    root = Path(tempfile.gettempdir()) / "farm-ray"
    return root if len(str(root)) <= MAX_TEMP_ROOT_LEN else Path("/tmp/farm-ray")


def _free_port(exclude: Collection[int | None] = ()) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port


def _port_free(port: int, host: str) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _process_tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants, plus the rest of its process group."""
    try:
        leader = psutil.Process(pid)
        tree = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    return tree + _group_members(pid)


def _group_members(pgid: int, created_before: float | None = None) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter(["create_time"]):
        try:
            if os.getpgid(p.pid) == pgid and (created_before is None or p.info["create_time"] <= created_before):
                members.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _end(procs: list[psutil.Process], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, what is still alive (psutil checks pid reuse)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in {p.pid: p for p in procs}.values() if _alive(p)]
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def _alive(p: psutil.Process) -> bool:
    """Running and not a zombie (a dead child of a dead parent waits for init to reap it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
