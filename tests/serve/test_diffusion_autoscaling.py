"""Concurrent load on a diffusion deployment: replicas rise above min_replicas, then fall back.

``tiny-sd-autoscale`` (min 1, max 3, target one ongoing request per replica,
1 s up / 2 s down delays, 2 s look-back) is loaded directly on Serve's HTTP
proxy, as the front door would. Nothing here measures durations: it waits
(with generous deadlines) for states the Serve controller reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from serve.config import diffusion_app_name
from serve.deploy import application_status
from tests.fixtures.serve_apps import AUTOSCALE, ServeApps

pytestmark = pytest.mark.slow

DEPLOYMENT = "DiffusionServer"


def _replicas(apps: ServeApps) -> int:
    status = application_status(apps.dashboard_url)[diffusion_app_name(AUTOSCALE)]
    return status["replicas"][DEPLOYMENT]


def _running_replicas(apps: ServeApps) -> int:
    url = apps.dashboard_url + "/api/serve/applications/"
    from cluster.local import auth_headers

    app = httpx.get(url, headers=auth_headers(), timeout=10).json()["applications"][diffusion_app_name(AUTOSCALE)]
    replicas = app["deployments"][DEPLOYMENT]["replicas"]
    return sum(1 for r in replicas if r["state"] == "RUNNING")


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting: {what}")


def test_replicas_scale_up_under_load_and_back_down(serve_apps: ServeApps) -> None:
    assert _running_replicas(serve_apps) == 1  # min_replicas
    stop = threading.Event()
    answers: list[int] = []
    seen_max = 0

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                r = http.post(serve_apps.app_url(AUTOSCALE) + "/generate", json={"prompt": "busy", "steps": 30})
                answers.append(r.status_code)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(6)]
    for w in workers:
        w.start()
    try:

        def scaled_up() -> bool:
            nonlocal seen_max
            seen_max = max(seen_max, _running_replicas(serve_apps))
            return seen_max > 1

        _wait_for("more than min_replicas running under load", scaled_up, timeout=240)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=120)
    assert seen_max <= 3  # max_replicas
    assert answers and set(answers) <= {200, 503}, sorted(set(answers))
    assert answers.count(200) >= len(answers) // 2

    _wait_for("back to min_replicas after the load stops", lambda: _replicas(serve_apps) == 1 and _running_replicas(serve_apps) == 1,
              timeout=240)
