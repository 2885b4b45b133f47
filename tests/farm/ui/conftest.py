"""One dashboard per test module: a real control plane with its dispatcher on PostgreSQL and the session's Ray,
and one headless Chromium (Debian's, driven by Playwright through its path) with axe-core to inject.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cluster.local import LocalRayHead
from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, Organization, Role
from farm.db.models import UiSession
from farm.settings import Settings
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm

REPO = Path(__file__).resolve().parents[3]
AXE = REPO / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ECHO_KIND = "tests.extra_kinds.echo_kind"  # a real job whose results are images


@dataclass
class Dashboard:
    jf: JobFarm
    keys: dict[str, str]  # a_admin, a_viewer, b_admin
    url: str
    shots: Path
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def dashboard(module_database: str, ray_cluster: LocalRayHead, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    from kinds import registry

    home = tmp_path_factory.mktemp("ui-farm")
    with pytest.MonkeyPatch.context() as mp:  # the extra kind leaves the process-wide registry with the module
        registry.load()
        mp.setattr(registry, "_KINDS", dict(registry._KINDS))
        mp.setattr(registry, "_LOADED", set(registry._LOADED))
        settings = make_settings(home, module_database, ray_cluster).model_copy(update={"extra_kinds": [ECHO_KIND]})
        jf = start_job_farm(settings)
        try:
            with jf.farm.db.session() as s:
                orgs = {name: id_ for name, id_ in s.execute(select(Organization.name, Organization.id))}
                keys = {"a_viewer": issue_key(s, orgs["org-a"], "a-viewer", Role.viewer)[1],
                        "a_admin": issue_key(s, orgs["org-a"], "a-admin-ui", Role.admin)[1],
                        "b_admin": issue_key(s, orgs["org-b"], "b-admin-ui", Role.admin)[1]}
                s.commit()
            yield Dashboard(jf, keys, settings.base_url, tmp_path_factory.mktemp("ui-screens"))
        finally:
            jf.farm.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")
    assert path, "Debian's chromium is a test dependency: scripts/setup.sh installs it"
    assert AXE.is_file(), "axe-core is a test dependency: scripts/setup.sh installs it under .venv/node"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["format"]["duration"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About a second of H.264/AAC in MP4, index at the front, as a camera or editor would hand over."""
    path = tmp_path_factory.mktemp("ui-media") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=24:duration=1.2",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=1.2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-g", "6", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path)], check=True)
    return path


class Site:
    """A control plane without dispatcher on a fresh PostgreSQL database, for page tests that need no Ray."""

    def __init__(self, db_url: str, home: Path, **ui: Any) -> None:
        self.settings = Settings(home=home, db={"url": db_url}, storage={"backend": "local", "local_root": home / "objects"},
                                 dispatch={"enabled": False}, webhooks={"enabled": False}, ui=ui)
        self.db = Database(db_url)
        self.app = create_app(self.settings, db=self.db)
        self.keys: dict[str, str] = {}
        self.key_ids: dict[str, str] = {}

    def start(self) -> TestClient:
        client = TestClient(self.app).__enter__()
        with self.db.session() as s:
            org = create_org(s, "studio")
            self.org_id = org.id
            for role in Role:
                key, plaintext = issue_key(s, org.id, role.value, role)
                self.keys[role.value], self.key_ids[role.value] = plaintext, key.id
            s.commit()
        return client

    def sessions(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(UiSession)) or 0)


@pytest.fixture
def site(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Site, TestClient]]:
    site = Site(postgres_url, tmp_path)
    client = site.start()
    yield site, client
    client.__exit__(None, None, None)
    site.db.dispose()
