"""One settings object for the whole farm.

Everything is read from the environment (``FARM_`` prefix, ``__`` for nested
groups) or a ``.env`` file, so a GPU cluster differs from a laptop only by
configuration. The embedded defaults keep every byte under ``./.farm/``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HOME = Path(".farm")


class DatabaseSettings(BaseModel):
    url: str = Field(
        default=f"sqlite:///{HOME / 'farm.db'}",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user:pw@host/db",
    )
    echo: bool = False


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    local_root: Path = HOME / "objects"
    max_upload_bytes: int = Field(default=5 * 1024**3, description="Largest accepted asset upload")
    presign_expiry_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)


class S3Settings(BaseModel):
    endpoint: str = Field(default="127.0.0.1:9000", description="host:port of MinIO/S3/R2")
    access_key: str = "minioadmin"
    secret_key: SecretStr = SecretStr("minioadmin")
    bucket: str = "storycore-farm"
    region: str | None = None
    secure: bool = False
    part_size: int = Field(default=8 * 1024**2, ge=5 * 1024**2, description="Multipart part size; an upload holds about two parts in memory")


class RaySettings(BaseModel):
    address: str | None = Field(
        default=None, description="Ray cluster to join (ray://, auto or host:port); None starts a local head"
    )
    dashboard_url: str | None = Field(
        default=None, description="Ray dashboard / Jobs API URL; derived for the local head"
    )
    num_cpus: int = Field(default=8, ge=1, description="Logical CPUs of the local head")
    dashboard_port: int = 8265
    head_port: int = 6380


class ModelSettings(BaseModel):
    cache_dir: Path = HOME / "models"
    registry_file: Path | None = Field(
        default=None, description="YAML file mapping served model names to sources"
    )


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(default=None, description="Base URL clients use; derived if unset")
    page_size_max: int = 200


class DispatchSettings(BaseModel):
    enabled: bool = Field(default=True, description="Run the dispatcher in this control-plane process")
    max_running: int = Field(default=8, ge=1, description="Jobs running on Ray at once")
    poll_s: float = Field(default=0.5, gt=0, le=60)
    lease_ttl_s: float = Field(default=10, ge=1, description="A dispatcher silent this long loses the lease")
    max_attempts: int = Field(default=3, ge=1, le=20, description="Runner starts per job before it fails")


class Settings(BaseSettings):
    """The farm's configuration (``FARM_*`` environment variables)."""

    model_config = SettingsConfigDict(
        env_prefix="FARM_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    home: Path = HOME
    db: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    s3: S3Settings = S3Settings()
    ray: RaySettings = RaySettings()
    models: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()
    dispatch: DispatchSettings = DispatchSettings()

    @model_validator(mode="after")
    def _under_home(self) -> Settings:
        """Embedded paths follow FARM_HOME unless set one by one."""
        if "url" not in self.db.model_fields_set:
            self.db.url = f"sqlite:///{self.home / 'farm.db'}"
        if "local_root" not in self.storage.model_fields_set:
            self.storage.local_root = self.home / "objects"
        if "cache_dir" not in self.models.model_fields_set:
            self.models.cache_dir = self.home / "models"
        return self

    @property
    def base_url(self) -> str:
        return self.api.public_url or f"http://{self.api.host}:{self.api.port}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as FARM_* variables with absolute paths, for a Ray Job's runtime env."""
    env: dict[str, str] = {"FARM_HOME": str(settings.home.resolve())}
    for group in ("db", "storage", "s3", "ray", "models", "api", "dispatch"):
        model = getattr(settings, group)
        for name in type(model).model_fields:
            value = getattr(model, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, str) and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
                value = "sqlite:///" + str(Path(value.removeprefix("sqlite:///")).resolve())
            env[f"FARM_{group.upper()}__{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
