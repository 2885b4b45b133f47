"""Request and response models (XCreate / XUpdate / XPublic, one list envelope)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

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
