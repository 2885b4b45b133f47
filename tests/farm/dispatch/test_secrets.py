"""No secrets in Ray Job submissions: anyone with the dashboard token can read a job's runtime env.

The database URL with its password and the S3 secret key reach the runner
from its node (here: the 0600 file under the farm's home that the submission
names); the Jobs API shows only public settings and references.
"""

from __future__ import annotations

import json
import secrets
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from minio import Minio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cluster.local import LocalRayHead, auth_headers, job_client
from farm.dispatch.dispatcher import Dispatcher
from farm.runner_env import (
    SECRET_NAMES_ENV,
    SECRETS_FILE_ENV,
    is_secret,
    job_env,
    read_secrets_file,
    runner_secrets_path,
    runner_settings,
    write_secrets_file,
)
from farm.settings import S3Settings, Settings, StorageSettings
from tests.farm.dispatch.conftest import make_settings, start_job_farm
from tests.fixtures.s3 import S3Server, unique_bucket
from tests.kinds.throwaway import isolate_registry

EXTRA = "tests.extra_kinds.echo_kind"  # a kind whose Ray tasks write to the object store


# -- which settings are secret, and where they go ---------------------------------------------


@pytest.mark.parametrize(("value", "secret"), [
    ("postgresql://user:pass@host/db", True),
    ("postgresql+psycopg://farm:p%40ss@127.0.0.1:5432/farm", True),
    ("postgresql+psycopg://farm:@db/farm", True),  # an empty password is still a password field
    ("postgresql+psycopg://farm@db/farm?password=hunter2", True),
    ("postgresql+psycopg://farm@db/farm?sslmode=require", False),
    ("postgresql+psycopg://farm@127.0.0.1:5432/farm", False),
    ("sqlite:///.farm/farm.db", False),
    ("ray://10.0.0.5:10001", False),
    ("https://user:token@hooks.example.com/x", True),
    ("minio.internal:9000", False),
    ("plain words", False),
])
def test_which_values_are_secret(value: str, secret: bool) -> None:
    assert is_secret(value) is secret


def test_job_env_keeps_secret_values_out_of_the_public_part(tmp_path: Path) -> None:
    db_url = "postgresql+psycopg://farm:db-pw-123@db.internal:5432/farm"
    s = Settings(home=tmp_path, db={"url": db_url}, storage={"backend": "s3"},
                 s3={"access_key": "AKIAFARM", "secret_key": "s3-secret-456", "endpoint": "s3.internal:9000"})
    public, secret = job_env(s)
    assert secret == {"FARM_DB__URL": db_url, "FARM_S3__SECRET_KEY": "s3-secret-456"}
    dumped = json.dumps(public)
    assert "db-pw-123" not in dumped and "s3-secret-456" not in dumped
    assert public["FARM_S3__ACCESS_KEY"] == "AKIAFARM" and public["FARM_S3__ENDPOINT"] == "s3.internal:9000"
    assert public["FARM_STORAGE__BACKEND"] == "s3" and public["FARM_HOME"] == str(tmp_path.resolve())

    # No password in the URL: it is not a secret and travels; a secret left at its default stays home.
    public, secret = job_env(Settings(home=tmp_path, db={"url": "postgresql+psycopg://farm@db/farm"}))
    assert secret == {} and public["FARM_DB__URL"] == "postgresql+psycopg://farm@db/farm"
    assert "FARM_S3__SECRET_KEY" not in public


def test_the_dispatcher_submits_references_and_writes_a_0600_file(tmp_path: Path) -> None:
    db_url = "postgresql+psycopg://farm:db-pw-123@db.internal/farm"
    s = Settings(home=tmp_path / "home", db={"url": db_url}, s3={"secret_key": "s3-secret-456"})
    env = Dispatcher(None, s).runner_env()  # type: ignore[arg-type]  # runner_env touches no database
    assert "db-pw-123" not in json.dumps(env) and "s3-secret-456" not in json.dumps(env)
    assert env[SECRET_NAMES_ENV] == "FARM_DB__URL,FARM_S3__SECRET_KEY"
    path = Path(env[SECRETS_FILE_ENV])
    assert path == runner_secrets_path(s) and path.is_absolute()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets_file(path) == {"FARM_DB__URL": db_url, "FARM_S3__SECRET_KEY": "s3-secret-456"}

    # On a cluster the nodes hold the secrets: the submission names them, no file is written.
    node = s.model_copy(update={"home": tmp_path / "cluster-home", "dispatch": s.dispatch.model_copy(update={"runner_secrets": "node"})})
    env = Dispatcher(None, node).runner_env()  # type: ignore[arg-type]
    assert SECRETS_FILE_ENV not in env and env[SECRET_NAMES_ENV] == "FARM_DB__URL,FARM_S3__SECRET_KEY"
    assert not (tmp_path / "cluster-home").exists()


def test_runner_settings_from_the_file_and_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    file_url = "postgresql+psycopg://farm:from-file@db/farm"
    path = write_secrets_file(tmp_path / "runner-secrets.json", {"FARM_DB__URL": file_url})
    # The node's environment has a stale URL and the S3 key; the farm's file wins where both have a value.
    monkeypatch.setenv("FARM_DB__URL", "postgresql+psycopg://farm:stale@old/farm")
    monkeypatch.setenv("FARM_S3__SECRET_KEY", "from-node")
    monkeypatch.setenv(SECRETS_FILE_ENV, str(path))
    monkeypatch.setenv(SECRET_NAMES_ENV, "FARM_DB__URL,FARM_S3__SECRET_KEY")
    s = runner_settings()
    assert s.db.url == file_url and s.s3.secret_key.get_secret_value() == "from-node"

    # A runner on another node than the control plane's: no file there, the node's environment does.
    monkeypatch.setenv(SECRETS_FILE_ENV, str(tmp_path / "elsewhere.json"))
    monkeypatch.setenv("FARM_DB__URL", "postgresql+psycopg://farm:node@db/farm")
    assert runner_settings().db.url == "postgresql+psycopg://farm:node@db/farm"

    # A named secret found nowhere: the runner stops instead of opening a default database.
    monkeypatch.delenv("FARM_S3__SECRET_KEY")
    with pytest.raises(RuntimeError, match="FARM_S3__SECRET_KEY are not on this node") as err:
        runner_settings()
    assert "node@db" not in str(err.value) and "elsewhere.json was not found" in str(err.value)

    # Only FARM_* settings may come from such a file (not PATH, LD_PRELOAD...).
    bad = tmp_path / "bad.env"
    bad.write_text("FARM_DB__URL=sqlite:///x.db\nLD_PRELOAD=/tmp/evil.so\n")
    monkeypatch.setenv(SECRETS_FILE_ENV, str(bad))
    with pytest.raises(ValueError, match="LD_PRELOAD"):
        runner_settings()


# -- a real job on Ray, PostgreSQL with a password, S3 with a secret key -----------------------


@dataclass
class PasswordDatabase:
    url: str
    password: str


@pytest.fixture
def password_db(postgres_server: str, postgres_url: str) -> Iterator[PasswordDatabase]:
    """The test's database owned by a role of its own that must log in with its password."""
    role, password = f"farm_secret_{uuid.uuid4().hex[:8]}", f"pw-{secrets.token_hex(12)}"
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SET password_encryption = 'scram-sha-256'"))
        conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'ALTER DATABASE "{name}" OWNER TO "{role}"'))
        hba = Path(conn.execute(text("SHOW hba_file")).scalar_one())
    base = make_url(postgres_url)
    url = base.set(username=role, password=password).render_as_string(hide_password=False)
    # The session's server trusts local logins; make this role's password count (when the server is ours).
    original = hba.read_text() if hba.is_file() else None
    if original is not None:
        rules = f"host all {role} 127.0.0.1/32 scram-sha-256\nhost all {role} ::1/128 scram-sha-256\n"
        hba.write_text(rules + original)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_reload_conf()"))
        wrong = create_engine(base.set(username=role, password="wrong").render_as_string(hide_password=False))
        deadline = time.monotonic() + 10
        while True:  # the reload is asynchronous: wait until a wrong password is refused
            try:
                with wrong.connect():
                    pass
            except OperationalError as exc:
                assert "password authentication failed" in str(exc)
                break
            assert time.monotonic() < deadline, "PostgreSQL still accepts a wrong password"
            time.sleep(0.1)
        wrong.dispose()
    try:
        yield PasswordDatabase(url, password)
    finally:
        with admin.connect() as conn:
            if original is not None:
                hba.write_text(original)
                conn.execute(text("SELECT pg_reload_conf()"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_no_secret_in_what_the_jobs_api_returns(
    password_db: PasswordDatabase, s3_server: S3Server, ray_cluster: LocalRayHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_registry(monkeypatch)  # the extra kind this farm loads leaves the process-wide registry with the test
    s3_secret = f"s3-secret-{secrets.token_hex(12)}"
    bucket = unique_bucket()
    settings = make_settings(tmp_path, password_db.url, ray_cluster).model_copy(update={
        "extra_kinds": [EXTRA],
        "storage": StorageSettings(backend="s3"),
        "s3": S3Settings(endpoint=s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_secret,
                         bucket=bucket, region=s3_server.region, part_size=5 * 1024**2),
    })
    jf = start_job_farm(settings)
    try:
        job = jf.submit(kind="test.echo", spec={"words": ["salt", "pepper"]})
        done = jf.wait_done(job["id"], timeout=240)
        assert done["state"] == "succeeded" and done["attempts"] == 1, done
        assert done["counts"] == {"total": 2, "succeeded": 2, "failed": 0}
        cards = [o for o in done["outputs"] if o["output"] == "card"]
        for o in cards:  # Ray workers wrote them to S3; the runner recorded them in PostgreSQL
            r = jf.clients["a"].get(f"/v1/assets/{o['asset_id']}/content")
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")

        client = job_client(settings.ray.dashboard_url or "")
        ray_job_id = done["ray_job_id"]
        info = client.get_job_info(ray_job_id)
        seen = {
            "get_job_info": info.model_dump_json(),
            "repr": repr(info),
            "entrypoint": info.entrypoint,
            "GET /api/jobs/{id}": httpx.get(f"{settings.ray.dashboard_url}/api/jobs/{ray_job_id}",
                                           headers=auth_headers(), timeout=30).text,
            "list_jobs": json.dumps([j.model_dump(mode="json") for j in client.list_jobs() if j.submission_id == ray_job_id]),
            "logs": client.get_job_logs(ray_job_id),
        }
        for secret in (password_db.password, s3_secret):
            for where, what in seen.items():
                assert secret not in what, f"a secret appears in {where}"

        # What the submission carries instead: which settings are secret, and where the node keeps them.
        env = info.runtime_env["env_vars"]
        assert env[SECRET_NAMES_ENV] == "FARM_DB__URL,FARM_S3__SECRET_KEY"
        assert "FARM_DB__URL" not in env and "FARM_S3__SECRET_KEY" not in env
        assert env["FARM_S3__ACCESS_KEY"] == s3_server.access_key and env["FARM_STORAGE__BACKEND"] == "s3"
        path = Path(env[SECRETS_FILE_ENV])
        assert path == runner_secrets_path(settings)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text()) == {"FARM_DB__URL": password_db.url, "FARM_S3__SECRET_KEY": s3_secret}
    finally:
        jf.close()
        minio = Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, secure=False, region=s3_server.region)
        if minio.bucket_exists(bucket):
            for obj in minio.list_objects(bucket, recursive=True):
                minio.remove_object(bucket, obj.object_name)
            minio.remove_bucket(bucket)
