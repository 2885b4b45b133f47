"""Who made a piece of output: the Ray node and process, recorded with it so a job shows where its work ran.

On a cluster the host name says little (pods and test nodes share one), so a
worker is named by its Ray node id; outside Ray (local runs, tools) by host.
"""

from __future__ import annotations

import os
import sys


def worker_id() -> str:
    """``<node>:<pid>``: the Ray node id (56 hex digits) inside a Ray worker, else the host name."""
    node = os.uname().nodename
    ray = sys.modules.get("ray")  # only a process Ray started (or joined) has a node to name
    if ray is not None and ray.is_initialized():
        node = ray.get_runtime_context().get_node_id()
    return f"{node}:{os.getpid()}"


def node_of(worker: str) -> str:
    """The node part of a `worker_id`."""
    return worker.rpartition(":")[0]
