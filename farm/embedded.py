"""The embedded farm: a local Ray head and the control plane in one process.

`farm up` runs it in the foreground; `farm demo` and the tests run it in the
background. Stopping it stops what it started, and nothing else.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from farm.api import create_app
from farm.db import Database
from farm.settings import Settings


class EmbeddedFarm:
    def __init__(self, settings: Settings, *, start_ray: bool = True) -> None:
        self.settings = settings
        self._start_ray = start_ray and settings.ray.address is None and settings.ray.dashboard_url is None
        self._head = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.db = Database.of(settings.db)

    @property
    def url(self) -> str:
        return self.settings.base_url

    def start_ray(self) -> None:
        from cluster.local import LocalRayHead, ensure_auth_env

        ensure_auth_env()
        if not self._start_ray:
            return
        r = self.settings.ray
        self._head = LocalRayHead(num_cpus=r.num_cpus, port=r.head_port, dashboard_port=r.dashboard_port)
        self._head.start()
        r.address = self._head.address
        r.dashboard_url = self._head.dashboard_url
        os.environ["FARM_RAY__ADDRESS"] = r.address
        os.environ["FARM_RAY__DASHBOARD_URL"] = r.dashboard_url

    @property
    def owns_ray(self) -> bool:
        """True when this farm started the Ray head (and so may replace its Serve applications)."""
        return self._head is not None

    def deploy_serve(self) -> dict[str, object]:
        """Deploy the Serve applications of the model registry and point the front door at them.

        Builds the tiny demo models first when no registry file is set. The
        PUT returns at once; replicas start in the background (vLLM takes a
        minute on a small CPU) and generation routes answer 503 until then.
        Returns the Serve config that was deployed.
        """
        from serve.config import serve_config, serve_url
        from serve.demo_models import build_demo_models
        from serve.demo import load_registry
        from serve.deploy import deploy

        s = self.settings
        if not s.ray.dashboard_url:
            raise RuntimeError("no Ray dashboard to deploy Serve applications to")
        if s.models.registry_file is None:
            build_demo_models(s.models.cache_dir)
        config = serve_config(load_registry(s.models.registry_file, s.models.cache_dir), host=s.serve.http_host, port=s.serve.http_port)
        deploy(s.ray.dashboard_url, config)
        s.serve.url = serve_url(config)
        os.environ["FARM_SERVE__URL"] = s.serve.url
        return config

    def prepare(self) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.db.upgrade()

    def server(self) -> uvicorn.Server:
        app = create_app(self.settings, db=self.db)
        config = uvicorn.Config(app, host=self.settings.api.host, port=self.settings.api.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 60) -> EmbeddedFarm:
        """Start everything in the background and wait until the API answers."""
        self.prepare()
        self.start_ray()
        server = self.server()
        self._thread = threading.Thread(target=server.run, name="farm-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.started:
                return self
            if not self._thread.is_alive():
                raise RuntimeError(f"control plane failed to start on {self.url}")
            time.sleep(0.05)
        raise TimeoutError(f"control plane did not start within {timeout}s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._head is not None:
            self._head.stop()
            self._head = None
        self.db.dispose()

    def __enter__(self) -> EmbeddedFarm:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()

    def ready(self) -> dict[str, object]:
        return httpx.get(f"{self.url}/readyz", timeout=10).json()


def save_credentials(home: Path, url: str, key: str) -> Path:
    """Remember the local admin key for the CLI (mode 0600, like ~/.ray/auth_token)."""
    path = home / "credentials.json"
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "api_key": key}, fh)
    return path
