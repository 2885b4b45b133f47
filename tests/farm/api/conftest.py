"""A real control plane in-process: PostgreSQL (or SQLite), a real object store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, Role
from farm.settings import S3Settings, ServeSettings, Settings, StorageSettings
from tests.fixtures.s3 import unique_bucket


@dataclass
class Farm:
    client: TestClient
    db: Database
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)
    orgs: dict[str, str] = field(default_factory=dict)

    def h(self, who: str = "a_admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, method: str, path: str, who: str = "a_admin", **kw: Any) -> Any:
        return self.client.request(method, path, headers={**self.h(who), **kw.pop("headers", {})}, **kw)

    def project(self, name: str = "p", who: str = "a_admin") -> dict[str, Any]:
        r = self.call("POST", "/v1/projects", who, json={"name": name})
        assert r.status_code == 201, r.text
        return r.json()

    def upload(self, project_id: str, data: bytes, name: str = "f.bin", who: str = "a_admin") -> Any:
        return self.call("POST", f"/v1/projects/{project_id}/assets", who, files={"file": (name, data)})


def make_farm(db_url: str, home: Path, storage: StorageSettings, s3: S3Settings | None = None,
              serve: ServeSettings | None = None) -> Iterator[Farm]:
    settings = Settings(home=home, db={"url": db_url}, storage=storage, s3=s3 or S3Settings(), serve=serve or ServeSettings())
    db = Database(db_url)
    app = create_app(settings, db=db)
    with TestClient(app) as client:
        farm = Farm(client=client, db=db, settings=settings)
        with db.session() as s:
            for org_name in ("a", "b"):
                org = create_org(s, f"org-{org_name}")
                farm.orgs[org_name] = org.id
                for role in Role:
                    _, plaintext = issue_key(s, org.id, f"{org_name}-{role.value}", role)
                    farm.keys[f"{org_name}_{role.value}"] = plaintext
            s.commit()
        yield farm
    db.dispose()


@pytest.fixture
def farm(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    """PostgreSQL + local object directory."""
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


@pytest.fixture(params=["pg-local", "pg-s3", pytest.param("sqlite-local", marks=pytest.mark.sqlite)])
def any_farm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Farm]:
    """The same behaviour on every supported database and object store."""
    kind = request.param
    if kind.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'farm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    if kind.endswith("s3"):
        srv = request.getfixturevalue("s3_server")
        s3 = S3Settings(endpoint=srv.endpoint, access_key=srv.access_key, secret_key=srv.secret_key,
                        bucket=unique_bucket(), region=srv.region, part_size=5 * 1024**2)
        yield from make_farm(url, tmp_path, StorageSettings(backend="s3"), s3)
    else:
        yield from make_farm(url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))
