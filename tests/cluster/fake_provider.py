"""A Ray head with a real autoscaler on Ray's fake multi-node provider: GPU nodes added and removed on this machine.

Ray 2.60's ``AutoscalingCluster`` cannot be used here (its ``start()`` runs
``ray stop --force``, which would stop every Ray cluster on the machine, the
test session's included), so the head is a `LocalRayHead` of our own, with
an autoscaling config written here and ``RAY_FAKE_CLUSTER=1`` in its
environment, stopped by process id. The autoscaler then starts each "node"
as a real raylet on this machine, with the node type's resources (fake
GPUs, an accelerator type), and stops it after the idle timeout.

Nodes are read from the head's state API over HTTP, so the test process
never joins the cluster as a Ray driver.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cluster.local import LocalRayHead, auth_headers

HEAD_CPUS = 4  # job drivers (runners, demand requests) run on the head, as on a real cluster
GPU_TYPE = "gpu-l4"
ACCELERATOR = "L4"
IDLE_TIMEOUT_MIN = 0.1  # six seconds; clouds use minutes
# A node (the head included) that misses health checks for 15 s is declared dead, and a busy two-core machine
# running a head, its autoscaler and several raylets can stall that long; removed nodes leave at once either way.
PATIENT_HEALTH_CHECKS = {"health_check_period_ms": 3000, "health_check_failure_threshold": 20}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def autoscaling_config(gcs_address: str, max_gpu_nodes: int) -> dict[str, Any]:
    """A CPU-only head and one GPU node type: one fake L4 per node, from zero to ``max_gpu_nodes``."""
    return {
        "cluster_name": "farm-fake-gpus",
        "max_workers": max_gpu_nodes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,  # else the provider's nodes look for a GCS on port 6379
            # One node per launch (the fake provider's default): with launch_multiple the autoscaler, slow to see
            # nodes that take long to start on a busy machine, launches more than it was asked for.
            "launch_multiple": False,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": HEAD_CPUS, "GPU": 0}, "node_config": {}, "max_workers": 0},
            GPU_TYPE: {
                "resources": {"CPU": 1, "GPU": 1, f"accelerator_type:{ACCELERATOR}": 1, "object_store_memory": 128 * 1024**2},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_gpu_nodes,
            },
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def start_fake_cluster(folder: Path, max_gpu_nodes: int = 5) -> LocalRayHead:
    """The head, its autoscaler and the fake provider; GPU nodes come and go with demand."""
    port = free_port()
    config = folder / "autoscaling.yaml"
    config.write_text(json.dumps(autoscaling_config(f"127.0.0.1:{port}", max_gpu_nodes)))
    head = LocalRayHead(num_cpus=HEAD_CPUS, num_gpus=0, port=port,
                        extra_args=[f"--autoscaling-config={config}", f"--system-config={json.dumps(PATIENT_HEALTH_CHECKS)}"])
    saved = {k: os.environ.get(k) for k in ("RAY_FAKE_CLUSTER", "AUTOSCALER_UPDATE_INTERVAL_S")}
    os.environ.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")  # the head's environment only
    try:
        head.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return head


@dataclass(frozen=True)
class Node:
    node_id: str
    alive: bool
    gpus: float
    started: float  # unix seconds, as Ray recorded the node joining
    ended: float | None  # unix seconds it left; None while alive


def nodes(head: LocalRayHead) -> list[Node]:
    """Every node the head has seen, alive or gone, from its state API."""
    r = httpx.get(f"{head.dashboard_url}/api/v0/nodes", params={"limit": 1000, "detail": "true"}, headers=auth_headers(), timeout=10)
    r.raise_for_status()
    found = []
    for n in r.json()["data"]["result"]["result"]:
        end = n.get("end_time_ms") or 0
        found.append(Node(n["node_id"], n["state"] == "ALIVE", float((n.get("resources_total") or {}).get("GPU", 0)),
                          n["start_time_ms"] / 1000, end / 1000 if end else None))
    return found


def gpu_nodes(head: LocalRayHead, alive: bool = True) -> list[Node]:
    return [n for n in nodes(head) if n.gpus > 0 and (n.alive or not alive)]


def wait_gpu_nodes(head: LocalRayHead, count: int, timeout: float) -> list[Node]:
    """Poll until exactly ``count`` GPU nodes are alive."""
    deadline = time.monotonic() + timeout
    while True:
        up = gpu_nodes(head)
        if len(up) == count:
            return up
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(up)} GPU nodes alive after {timeout} s, not {count}")
        time.sleep(0.5)
