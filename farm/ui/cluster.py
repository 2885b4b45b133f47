"""What the cluster page shows, read from the Ray dashboard's HTTP API: nodes and Serve applications.

Every read tolerates a Ray that is down or slow: the page then says so
instead of failing. The dashboard itself is linked for logs and details.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from cluster.local import auth_headers

TIMEOUT_S = 3.0


@dataclass
class NodeView:
    node_id: str
    ip: str
    head: bool
    state: str
    cpus_total: float
    gpus_total: float
    cpus_used: float | None = None
    gpus_used: float | None = None


@dataclass
class AppView:
    name: str
    status: str
    message: str
    deployments: list[tuple[str, str, int]]  # name, status, replicas


@dataclass
class ClusterView:
    dashboard_url: str | None
    nodes: list[NodeView] = field(default_factory=list)
    apps: list[AppView] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_cluster(dashboard_url: str | None) -> ClusterView:
    view = ClusterView(dashboard_url)
    if not dashboard_url:
        view.errors.append("No Ray dashboard is configured (FARM_RAY__DASHBOARD_URL).")
        return view
    base = dashboard_url.rstrip("/")
    with httpx.Client(base_url=base, headers=auth_headers(), timeout=TIMEOUT_S) as client, ThreadPoolExecutor(2) as pool:
        nodes = pool.submit(_read_nodes, client, base)  # the two reads at once: a slow one does not wait for the other
        apps = pool.submit(_read_apps, client)
        (view.nodes, node_errors), (view.apps, app_errors) = nodes.result(), apps.result()
    view.errors += node_errors + app_errors
    return view


def _read_nodes(client: httpx.Client, base: str) -> tuple[list[NodeView], list[str]]:
    try:
        nodes = _nodes(client.get("/api/v0/nodes", params={"detail": "1", "limit": "1000"}).raise_for_status().json())
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return [], [f"Ray nodes could not be read from {base}: {_why(exc)}"]
    try:
        _usage(nodes, client.get("/api/cluster_status").raise_for_status().json())
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        pass  # totals still show; usage waits for the autoscaler's next report
    return nodes, []


def _read_apps(client: httpx.Client) -> tuple[list[AppView], list[str]]:
    try:
        return _apps(client.get("/api/serve/applications/").raise_for_status().json()), []
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return [], [f"Serve applications could not be read: {_why(exc)}"]


def _why(exc: Exception) -> str:
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


def _nodes(body: dict[str, Any]) -> list[NodeView]:
    rows = body["data"]["result"]["result"]
    out = []
    for n in rows:
        res = n.get("resources_total") or {}
        out.append(NodeView(n["node_id"], n.get("node_ip", ""), bool(n.get("is_head_node")), n.get("state", ""),
                            float(res.get("CPU", 0)), float(res.get("GPU", 0))))
    return sorted(out, key=lambda n: (not n.head, n.ip, n.node_id))


def _get(d: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def _usage(nodes: list[NodeView], body: dict[str, Any]) -> None:
    """Per-node used CPUs/GPUs from the autoscaler's last report (keys camelCased or not, by Ray version)."""
    status = _get(body.get("data") or {}, "clusterStatus", "cluster_status") or {}
    report = _get(status, "loadMetricsReport", "load_metrics_report") or {}
    by_node = _get(report, "usageByNode", "usage_by_node") or {}
    for node in nodes:
        usage = by_node.get(node.node_id)
        if not usage:
            continue
        cpu, gpu = usage.get("CPU"), usage.get("GPU")
        node.cpus_used = float(cpu[0]) if cpu else 0.0
        node.gpus_used = float(gpu[0]) if gpu else 0.0


def _apps(body: dict[str, Any]) -> list[AppView]:
    apps = body.get("applications") or {}
    out = []
    for name, app in sorted(apps.items()):
        deps = [(d, info.get("status", ""), len(info.get("replicas") or [])) for d, info in sorted((app.get("deployments") or {}).items())]
        out.append(AppView(name, app.get("status", ""), app.get("message", ""), deps))
    return out
