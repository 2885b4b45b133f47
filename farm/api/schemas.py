"""Request and response models (XCreate / XUpdate / XPublic, one list envelope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from farm.db.models import Role

T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page")


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: Text = ""


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: Text | None = None


class ProjectPublic(Public):
    id: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime


class AssetPublic(Public):
    id: str
    project_id: str
    name: str
    kind: str = Field(description="video, image, audio, text, document or other")
    content_type: str = Field(description="Sniffed from the bytes")
    size: int
    sha256: str
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    role: Role = Role.member


class KeyPublic(Public):
    id: str
    name: str
    role: Role
    prefix: str = Field(description="First characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The secret key; shown only in this response")


class AuditEventPublic(Public):
    id: str
    key_id: str | None
    action: str
    target_type: str
    target_id: str
    detail: dict[str, Any]
    created_at: datetime


class Health(BaseModel):
    status: str
    checks: dict[str, dict[str, Any]] = {}


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
    spec: dict[str, Any] = Field(default_factory=dict, description="Kind-specific; see GET /v1/job-kinds")
    priority: int = Field(default=50, ge=0, le=100, description="Higher runs first")
    project_id: Annotated[str, StringConstraints(max_length=64)]


class JobCounts(BaseModel):
    total: int
    succeeded: int
    failed: int


class JobPublic(Public):
    id: str
    kind: str
    state: str = Field(description="queued, running, cancel_requested, succeeded, failed or cancelled")
    priority: int
    project_id: str
    spec: dict[str, Any]
    counts: JobCounts
    attempts: int
    max_attempts: int
    result_asset_ids: list[str]
    error: str | None
    ray_job_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Any) -> JobPublic:
        data = {name: getattr(job, name) for name in cls.model_fields if name != "counts"}
        return cls(**data, counts=JobCounts(total=job.total, succeeded=job.succeeded, failed=job.failed))


class JobOutputPublic(Public):
    item: int | None = Field(description="The item that produced it; null for an output of the whole job")
    output: str = Field(description="The output's name, as GET /v1/job-kinds lists it for the job's kind")
    type: str = Field(description="What the asset is: video, video_shots, story_shotlist, image, captions, table, edit_list, jsonl or report")
    asset_id: str


class JobDetail(JobPublic):
    outputs: list[JobOutputPublic] = Field(description="Each result asset by item and typed output")

    @classmethod
    def with_outputs(cls, job: Any, outputs: list[Any]) -> JobDetail:
        return cls(**JobPublic.of(job).model_dump(), outputs=[JobOutputPublic.model_validate(o) for o in outputs])


class JobRetry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["failed", "all"] = Field(default="failed", description="Rerun only failed items, or everything")


class KindOutputPublic(BaseModel):
    name: str
    type: str
    per_item: Literal["one", "many"] = Field(description="How many assets each item yields for this output")
    description: str


class JobKindPublic(BaseModel):
    kind: str
    description: str
    spec_schema: dict[str, Any]
    outputs: list[KindOutputPublic] = Field(description="What jobs of this kind produce, as typed outputs")
