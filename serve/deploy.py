"""Deploy a Serve config through the dashboard's REST API, as ``serve deploy`` does.

The caller needs no Ray driver: one authenticated ``PUT
/api/serve/applications/`` (declarative: the config replaces every
application), then ``GET`` until the applications run. Used by ``farm up``,
the test fixtures and the benchmark.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from cluster.local import auth_headers

APPLICATIONS = "/api/serve/applications/"


class DeployError(RuntimeError):
    """The dashboard refused the config, or an application failed to start."""


def deploy(dashboard_url: str, config: dict[str, Any], *, timeout: float = 120, attempts: int = 3) -> None:
    """Hand ``config`` to Serve; returns once accepted (applications start in the background).

    The PUT is declarative, so it is safe to repeat: a dashboard that drops the
    connection (it may, while it starts the Serve controller on a busy machine)
    is asked again.
    """
    url = dashboard_url.rstrip("/") + APPLICATIONS
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.put(url, json=config, headers=auth_headers(), timeout=timeout)
            break
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            if attempt == attempts:
                raise DeployError(f"the dashboard at {dashboard_url} did not take the config: {exc!r}") from exc
            time.sleep(2 * attempt)
    if response.status_code != 200:
        raise DeployError(f"Serve refused the config ({response.status_code}): {response.text[:2000]}")


def application_status(dashboard_url: str, *, timeout: float = 10) -> dict[str, dict[str, Any]]:
    """``{app name: {"status": …, "message": …, "deployments": {name: status}}}``."""
    url = dashboard_url.rstrip("/") + APPLICATIONS
    response = httpx.get(url, headers=auth_headers(), timeout=timeout)
    response.raise_for_status()
    apps = response.json().get("applications") or {}
    return {
        name: {
            "status": app.get("status"),
            "message": app.get("message", ""),
            "deployments": {d: info.get("status") for d, info in (app.get("deployments") or {}).items()},
            "replicas": {d: len(info.get("replicas") or []) for d, info in (app.get("deployments") or {}).items()},
        }
        for name, app in apps.items()
    }


def wait_running(dashboard_url: str, names: list[str], *, timeout: float = 300, poll_s: float = 1.0) -> dict[str, dict[str, Any]]:
    """Wait until every named application is RUNNING; raise on DEPLOY_FAILED or timeout."""
    deadline = time.monotonic() + timeout
    status: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            status = application_status(dashboard_url)
        except httpx.HTTPError:
            time.sleep(poll_s)
            continue
        failed = {n: s["message"] for n, s in status.items() if n in names and s["status"] == "DEPLOY_FAILED"}
        if failed:
            raise DeployError(f"Serve applications failed to deploy: {failed}")
        if all(status.get(n, {}).get("status") == "RUNNING" for n in names):
            return status
        time.sleep(poll_s)
    states = {n: (status.get(n) or {}).get("status") for n in names}
    raise DeployError(f"Serve applications not running after {timeout:.0f}s: {states}")
