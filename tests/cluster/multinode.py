"""A local multi-node Ray cluster for tests: a head that takes no work and worker nodes with their own raylets.

The head is a `LocalRayHead` with ``num_cpus=0``, so tasks and actors land
on the workers only (job drivers still run on the head, as on a real
cluster). Each worker node is its own ``ray start --address=… --block``
process tree (raylet, agents, workers) with its own temp dir, environment
and logical CPUs, started and stopped by process id like the head: no
``ray stop``, so the test session's other Ray cluster is untouched. `kill`
removes a node the hard way (SIGKILL to its raylet and every process under
it), the way a machine that dies or is pre-empted leaves a cluster.

Nodes are told apart by a label (``farm-test-node=<name>``) and looked up
through the head's state API, so the test process never joins the cluster
as a Ray driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from cluster.local import (
    _LAUNCHER,
    HEAD_ENV,
    LocalRayHead,
    _end,
    _process_tree,
    _short_temp_root,
    auth_headers,
)

LABEL = "farm-test-node"
OBJECT_STORE_BYTES = 256 * 1024**2  # per node: the test media is small, and three nodes share one machine's /dev/shm
# A raylet waits this long for its agents to start; on a busy machine Ray's default (about a minute) is too short.
SLOW_START_ENV = {"RAY_agent_register_timeout_ms": "300000", "RAY_raylet_start_wait_time_s": "300"}
# A dead raylet is noticed after period × threshold; Ray's defaults (3 s × 5) only slow the tests down.
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                   "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}


@dataclass(frozen=True)
class NodeInfo:
    """One node as the head's state API reports it."""

    node_id: str
    state: str  # ALIVE or DEAD
    is_head: bool
    name: str | None  # our label; None for the head
    cpus: float


class RayWorkerNode:
    """One worker node joined to ``head_address``: a ``ray start --block`` process tree of our own."""

    def __init__(self, name: str, head_address: str, *, num_cpus: int, env: Mapping[str, str] | None = None,
                 temp_root: Path | None = None) -> None:
        self.name, self.head_address, self.num_cpus = name, head_address, num_cpus
        self.env = dict(env or {})
        self.temp_root = temp_root or _short_temp_root()
        self.temp_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RayWorkerNode:
        self.temp_root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.temp_root))
        # fmt: off
        cmd = [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(self.temp_dir),
            "start", "--address", self.head_address, "--block",
            "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--object-store-memory", str(OBJECT_STORE_BYTES),
            "--labels", f"{LABEL}={self.name}",
            "--dashboard-agent-listen-port", "0",
            "--temp-dir", str(self.temp_dir),
        ]
        # fmt: on
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | HEAD_ENV | SLOW_START_ENV | self.env
        with open(self.temp_dir / "node.log", "wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True)
        return self

    def processes(self) -> list[psutil.Process]:
        """The node's processes: ``ray start``, raylet, agents, and the workers the raylet started."""
        return _process_tree(self._proc.pid) if self._proc else []

    def kill(self) -> list[int]:
        """The node dies at once: SIGKILL to every process of it, raylet first; returns their pids."""
        procs = self.processes()
        procs.sort(key=lambda p: 0 if _is_raylet(p) else 1)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if self._proc is not None:
            self._proc.wait()
        return [p.pid for p in procs]

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the node and everything it started (SIGTERM, then SIGKILL); idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            tree = _process_tree(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            _end(tree)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        if self.temp_dir is None:
            return ""
        logs = [self.temp_dir / "node.log", *sorted(self.temp_dir.glob("session_*/logs/raylet.out"))]
        return "\n".join(f"--- {p} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in logs if p.is_file())


def _is_raylet(p: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return p.name() == "raylet"
    return False


class MultiNodeCluster:
    """A head with no CPUs and named worker nodes, all ours; `nodes()` reads what Ray sees."""

    def __init__(self, workers: Mapping[str, int], *, head_env: Mapping[str, str] | None = None,
                 worker_env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.head = LocalRayHead(
            num_cpus=0, num_gpus=0,
            extra_args=["--object-store-memory", str(OBJECT_STORE_BYTES), "--system-config", json.dumps(FAST_NODE_DEATH)],
        )
        self.head_env = dict(head_env or {})
        self.workers = {name: cpus for name, cpus in workers.items()}
        self.worker_env = {name: dict(env) for name, env in (worker_env or {}).items()}
        self.nodes_by_name: dict[str, RayWorkerNode] = {}

    def start(self, timeout: float = 300.0) -> MultiNodeCluster:
        try:
            with _environ(SLOW_START_ENV | self.head_env):  # what the head's raylet, its workers and job drivers inherit
                self.head.start()
            for name in self.workers:  # one at a time: a raylet starting on a busy machine needs the CPU
                self.add_worker(name, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str, timeout: float = 300.0, tries: int = 2) -> RayWorkerNode:
        """Start worker ``name`` and wait until the head sees it; a start that dies on the way is tried again."""
        for attempt in range(1, tries + 1):
            node = RayWorkerNode(name, self.head.address, num_cpus=self.workers[name], env=self.worker_env.get(name),
                                 temp_root=self.head.temp_root)
            self.nodes_by_name[name] = node.start()
            try:
                self.wait_alive({name}, timeout)
                return node
            except (RuntimeError, TimeoutError):  # its raylet gave up starting (an agent too slow on a busy machine)
                node.stop()
                if attempt == tries:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for node in self.nodes_by_name.values():
            node.stop()
        self.head.stop()

    def __enter__(self) -> MultiNodeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what Ray sees ----------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        r = httpx.get(f"{self.head.dashboard_url}/api/v0/nodes", params={"limit": 100, "detail": "true"},
                      headers=auth_headers(), timeout=10)
        r.raise_for_status()
        return [_node_info(n) for n in r.json()["data"]["result"]["result"]]

    def node_id(self, name: str) -> str:
        """The live node id of worker ``name``."""
        (node,) = [n for n in self.nodes() if n.name == name and n.state == "ALIVE"]
        return node.node_id

    @property
    def head_node_id(self) -> str:
        (node,) = [n for n in self.nodes() if n.is_head]
        return node.node_id

    def wait_alive(self, names: set[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if names <= {n.name for n in self.nodes() if n.state == "ALIVE" and n.name}:
                    return
            for name in names:
                node = self.nodes_by_name.get(name)
                if node is not None and not node.is_running():
                    raise RuntimeError(f"worker node {name} exited:\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker nodes {sorted(names)} did not join in {timeout} s")
            time.sleep(0.25)

    def wait_dead(self, node_id: str, timeout: float = 60.0) -> None:
        """Until the head has marked ``node_id`` dead (its health checks failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(n.node_id == node_id and n.state == "DEAD" for n in self.nodes()):
                return
            time.sleep(0.25)
        raise TimeoutError(f"node {node_id} still alive after {timeout} s")


def _node_info(raw: dict[str, Any]) -> NodeInfo:
    labels = raw.get("labels") or {}
    return NodeInfo(raw["node_id"], raw["state"], bool(raw.get("is_head_node")), labels.get(LABEL),
                    float((raw.get("resources_total") or {}).get("CPU", 0)))


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment for the duration (for a child process to inherit)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
