"""Property-based fuzz of the whole OpenAPI schema, in-process: no route answers 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from cluster.local import LocalRayHead
from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, Role
from farm.settings import Settings, StorageSettings

STATE: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def api_schema(postgres_server: str, fuzz_home: Path, ray_cluster: LocalRayHead) -> Iterator[object]:
    from sqlalchemy import create_engine, text

    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "fuzz"'))
        conn.execute(text('CREATE DATABASE "fuzz"'))
    url = f"{postgres_server}/fuzz"
    settings_ = Settings(home=fuzz_home, db={"url": url}, storage=StorageSettings(local_root=fuzz_home / "objects", max_upload_bytes=1 << 20),
                         ray={"dashboard_url": ray_cluster.dashboard_url})
    db = Database(url)
    db.upgrade()
    with db.session() as s:
        org = create_org(s, "fuzz")
        _, STATE["key"] = issue_key(s, org.id, "fuzz", Role.admin)
        s.commit()
    app = create_app(settings_, db=db, migrate=False)
    app.state.runtime.store.ensure_ready()
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    db.dispose()
    admin.dispose()


@cache
def _spec() -> dict:
    """The app's static schema, built once (each build is a whole app)."""
    return create_app(Settings(db={"url": "sqlite://"}), migrate=False).openapi()


def _operations() -> list[tuple[str, str]]:
    """Read at collection time from the app's static schema (no database touched)."""
    spec = _spec()
    return [(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in ("get", "post", "patch", "put", "delete")]


def _documents_503(method: str, path: str) -> bool:
    """Generation routes need Serve, which this fuzz app has none of: they document a clean 503."""
    return "503" in _spec()["paths"][path][method.lower()].get("responses", {})


@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_errors(api_schema: schemathesis.BaseSchema, method: str, path: str) -> None:
    operation = api_schema[path][method]
    unavailable_ok = _documents_503(method, path)

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {STATE['key']}"})
        if unavailable_ok and response.status_code == 503:  # documented, fast, OpenAI-shaped
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}, response.text[:300]
            assert response.headers.get("retry-after"), response.headers
            return
        assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"

    check()
