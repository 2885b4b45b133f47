"""Settings: FARM_ prefix, nested groups, .env files, secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.runner_env import settings_env
from farm.settings import Settings


def test_nested_env_and_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FARM_HOME", str(tmp_path))
    monkeypatch.setenv("FARM_S3__ENDPOINT", "minio.internal:9000")
    monkeypatch.setenv("FARM_S3__SECRET_KEY", "hunter2")
    monkeypatch.setenv("FARM_RAY__NUM_CPUS", "32")
    s = Settings()
    assert s.db.url == f"sqlite:///{tmp_path / 'farm.db'}"
    assert s.storage.local_root == tmp_path / "objects" and s.models.cache_dir == tmp_path / "models"
    assert s.s3.endpoint == "minio.internal:9000" and s.ray.num_cpus == 32
    assert s.s3.secret_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in s.model_dump_json()


def test_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FARM_DB__URL=postgresql+psycopg://farm@db/farm\nFARM_API__PORT=9100\n")
    s = Settings()
    assert s.db.url == "postgresql+psycopg://farm@db/farm" and s.api.port == 9100
    assert s.base_url == "http://127.0.0.1:9100"


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_STORAGE__BACKEND", "ftp")
    with pytest.raises(ValueError, match="backend"):
        Settings()


def test_extra_kinds_reach_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_EXTRA_KINDS", '["studio.kinds.restyle", "studio_caption"]')
    s = Settings()
    assert s.extra_kinds == ["studio.kinds.restyle", "studio_caption"]
    env = settings_env(s)
    assert env["FARM_EXTRA_KINDS"] == "studio.kinds.restyle,studio_caption"
    monkeypatch.setenv("FARM_EXTRA_KINDS", env["FARM_EXTRA_KINDS"])  # what the Ray Job's runner reads back
    assert Settings().extra_kinds == s.extra_kinds
    assert "FARM_EXTRA_KINDS" not in settings_env(Settings(extra_kinds=[]))
    monkeypatch.setenv("FARM_EXTRA_KINDS", "studio/restyle.py")
    with pytest.raises(ValueError, match="not a module path: 'studio/restyle.py'"):
        Settings()
