"""One settings object for the whole farm.

Everything is read from the environment (``FARM_`` prefix, ``__`` for nested
groups) or a ``.env`` file, so a GPU cluster differs from a laptop only by
configuration. The embedded defaults keep every byte under ``./.farm/``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

HOME = Path(".farm")


def text_list(value: str) -> list[str]:
    """``a, b``, ``["a", "b"]`` or ``['a', 'b']`` (how settings_env renders a list) → ``["a", "b"]``."""
    return re.findall(r"[^\s,\[\]'\"]+", value)


class DatabaseSettings(BaseModel):
    url: str = Field(
        default=f"sqlite:///{HOME / 'farm.db'}",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user:pw@host/db",
    )
    echo: bool = False
    outage_s: float = Field(
        default=120, ge=0,
        description="How long a runner waits out an unreachable database (a restart, a failover) before its attempt fails",
    )
    pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections each farm process keeps open")
    max_overflow: int = Field(
        default=40, ge=0,
        description="Connections a PostgreSQL pool may open beyond pool_size under load (closed again when returned); "
        "keep pool_size + max_overflow above api.max_concurrent_requests, with room for event streams and the dispatcher",
    )
    pool_timeout_s: float = Field(
        default=10, gt=0, description="How long a request waits for a pooled connection before the API answers 503",
    )


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    local_root: Path = HOME / "objects"
    max_upload_bytes: int = Field(default=5 * 1024**3, description="Largest accepted asset upload")
    presign_expiry_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    cache_dir: Path | None = Field(
        default=None,
        description="This node's media cache (local copies of objects from a remote store, for decoders); "
        "None: $FARM_HOME/cache/media. A Ray node's own FARM_STORAGE__CACHE_DIR wins over its job's",
    )
    cache_max_bytes: int = Field(default=20 * 1024**3, ge=1, description="Largest the media cache grows on one node; least recently used files go first")


class S3Settings(BaseModel):
    endpoint: str = Field(default="127.0.0.1:9000", description="host:port of MinIO/S3/R2")
    access_key: str = "minioadmin"
    secret_key: SecretStr = SecretStr("minioadmin")
    bucket: str = "storycore-farm"
    region: str | None = None
    secure: bool = False
    part_size: int = Field(default=8 * 1024**2, ge=5 * 1024**2, description="Multipart part size; an upload holds about two parts in memory")
    outage_s: float = Field(
        default=60, ge=0,
        description="How long runners retry an unreachable object store (a restart) before the operation, and its item, fails",
    )


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
    max_concurrent_requests: int = Field(
        default=32, ge=0,
        description="Requests the control plane works on at once (an event stream counts until it starts streaming); "
        "the rest wait their turn, so a burst of clients never holds every pooled connection while waiting for a thread (0: no limit)",
    )
    admission_wait_s: float = Field(
        default=15, gt=0, description="How long a request waits for its turn before the API answers 503 with Retry-After",
    )


class DispatchSettings(BaseModel):
    enabled: bool = Field(default=True, description="Run the dispatcher in this control-plane process")
    max_running: int = Field(default=8, ge=1, description="Jobs running on Ray at once")
    gpu_demand: bool = Field(
        default=True,
        description="Tell Ray's autoscaler what queued and running GPU jobs need (request_resources, from a short Ray Job "
        "whenever the need changes), so GPU nodes come up before the jobs start and go when the queue drains",
    )
    max_gpus: float = Field(default=8, ge=0, description="Most GPUs the farm's jobs hold or ask the autoscaler for at once; GPU jobs beyond it wait in the queue")
    org_gpu_share: float = Field(
        default=1.0, gt=0, le=1,
        description="Most of max_gpus one organization's jobs get; orgs with GPU jobs waiting split max_gpus evenly (max-min fair) within it",
    )
    poll_s: float = Field(default=0.5, gt=0, le=60)
    lease_ttl_s: float = Field(default=10, ge=1, description="A dispatcher silent this long loses the lease")
    max_attempts: int = Field(default=3, ge=1, le=20, description="Runner starts per job before it fails")
    cancel_grace_s: float = Field(default=30, ge=0, description="How long a cancelled job's runner may take to stop on its own before Ray stops it")
    runner_python: str | None = Field(
        default=None,
        description="Interpreter of the Ray Job entrypoint (`<python> -m farm.runner <job>`) as the node that runs the "
        "driver knows it (on Kubernetes the control plane and the Ray head are different pods); None: this process's own",
    )
    runner_secrets: Literal["file", "node"] = Field(
        default="file",
        description="Where runners find the secret settings, which never travel in a Ray Job submission. "
        "file: the control plane writes them to FARM_HOME/runner-secrets.json (mode 0600) and the submission names that path "
        "(the embedded farm, whose Ray nodes share its file system); node: only from the node's environment "
        "(e.g. FARM_DB__URL and FARM_S3__SECRET_KEY from a Kubernetes Secret) or a file the node names in FARM_RUNNER_SECRETS_FILE",
    )


class ServeSettings(BaseModel):
    """The online generation API: where Serve answers, rate limits, input limits."""

    url: str | None = Field(
        default=None,
        description="Internal base URL of Ray Serve's HTTP proxy (never exposed); `farm up` sets it. None: generation routes answer 503",
    )
    deploy: bool = Field(default=True, description="`farm up` on its own local head deploys the Serve applications")
    http_host: str = Field(default="127.0.0.1", description="Where `farm up` binds Serve's HTTP proxy (keep it internal)")
    http_port: int = Field(default=8001, description="Port of Serve's HTTP proxy under `farm up`")
    connect_timeout_s: float = Field(default=2, gt=0, description="A Serve that does not accept within this is unavailable (503)")
    request_timeout_s: float = Field(default=600, gt=0, description="Longest wait for Serve to answer or stream a chunk")
    rate_limit_rps: float = Field(default=20, ge=0, description="Requests per second per API key, sustained (0: no limit)")
    rate_limit_burst: int = Field(default=60, ge=1, description="Requests per API key allowed at once before the sustained rate applies")
    key_cache_s: float = Field(
        default=5, ge=0,
        description="Seconds a verified API key is trusted by the generation routes without a database lookup; a key revoked "
        "through another process stops working there within this (0: look every request's key up)",
    )
    default_project: str = Field(default="generations", description="Project that stores generated images when no X-Farm-Project header is sent")
    max_image_upload_bytes: int = Field(default=4 << 20, ge=1, description="Largest input image for /v1/images/edits")
    max_media_bytes: int = Field(
        default=4 << 20, ge=1, description="Largest inline media part (an image_url data URL, input_audio data…) of a chat message"
    )
    media_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names or *.example.com patterns that remote media URLs of chat messages (image_url, video_url, "
        "input_audio…) may name; empty: remote media URLs are refused. Comma-separated or a JSON list in the environment",
    )

    @field_validator("media_allowed_hosts", mode="before")
    @classmethod
    def _media_hosts(cls, value: object) -> object:
        """Accept a comma-separated string or a list rendered as JSON/Python text (settings_env)."""
        if isinstance(value, str):
            value = text_list(value)
        if isinstance(value, list):
            value = [str(v).strip().lower().rstrip(".") for v in value]
        return value


class WebhookSettings(BaseModel):
    """Outgoing event webhooks: which targets they may reach, and how hard to try."""

    enabled: bool = Field(default=True, description="Run the webhook delivery worker in this control-plane process")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names or *.example.com patterns webhooks may target; empty: any public host. Comma-separated or a JSON list in the environment",
    )
    allow_private: bool = Field(default=False, description="Allow loopback, private and link-local targets (tests, receivers on the same network)")
    timeout_s: float = Field(default=5, gt=0, le=60, description="Longest wait for a receiver to answer one attempt")
    max_attempts: int = Field(default=8, ge=1, le=30, description="Attempts per delivery before it is marked failed")
    retry_base_s: float = Field(default=1, gt=0, description="Wait before the second attempt; doubles after each failure")
    retry_max_s: float = Field(default=3600, gt=0, description="Longest wait between two attempts")
    poll_s: float = Field(default=1, gt=0, le=60, description="How often the worker looks for due deliveries")
    concurrency: int = Field(default=4, ge=1, le=64, description="Deliveries sent at once by one worker")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        """Accept a comma-separated string or a list rendered as JSON/Python text (settings_env)."""
        if isinstance(value, str):
            value = text_list(value)
        if isinstance(value, list):
            value = [str(v).strip().lower().rstrip(".") for v in value]
            for host in value:
                if not re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", host):
                    raise ValueError(f"not a host name or *.domain pattern: {host!r}")
        return value


class BatchSettings(BaseModel):
    max_lines: int = Field(default=50_000, ge=1, description="Most requests in one batch input file")
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="Largest batch input file")
    completion_window_s: float = Field(
        default=24 * 3600, gt=0,
        description="How long a batch's completion window (`24h`, the only one the API accepts, as OpenAI's) lasts on this "
        "farm; the dispatcher expires batches past it. Applies to unfinished batches too: lowering it shortens theirs",
    )


class UiSettings(BaseModel):
    """The web dashboard under /ui: sessions, sign-in limits, how to tell a TLS request behind a proxy."""

    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600, description="How long a dashboard sign-in lasts")
    trusted_proxy: bool = Field(
        default=False,
        description="Believe X-Forwarded-Proto (set only behind a proxy that overwrites it): an https request gets a Secure cookie",
    )
    signin_rate: float = Field(default=0.2, ge=0, description="Sign-in attempts per second per client address, sustained (0: no limit)")
    signin_burst: int = Field(default=10, ge=1, description="Sign-in attempts per client address allowed at once")
    ray_dashboard_link: str | None = Field(default=None, description="The Ray dashboard URL shown to people; None: FARM_RAY__DASHBOARD_URL")

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(seconds=self.session_ttl_s)


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
    serve: ServeSettings = ServeSettings()
    webhooks: WebhookSettings = WebhookSettings()
    batch: BatchSettings = BatchSettings()
    ui: UiSettings = UiSettings()
    extra_kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules of job kinds beyond the built-in ones (each exposes KIND), loaded by the control plane and the runner. Comma-separated or a JSON list in the environment",
    )

    @field_validator("extra_kinds", mode="before")
    @classmethod
    def _module_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = text_list(value)
        if isinstance(value, list):
            for module in value:
                if not isinstance(module, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
                    raise ValueError(f"not a module path: {module!r}")
        return value

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


@lru_cache
def get_settings() -> Settings:
    return Settings()
