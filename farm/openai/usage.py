"""Usage totals and groups."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class UsageTotals(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    images: int
    replica_seconds: float = Field(description="Serve replica time spent on these requests (see farm/usage.py)")


class UsageGroup(UsageTotals):
    project_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    endpoint: str | None = None


class UsageReport(BaseModel):
    object: Literal["usage"] = "usage"
    org_id: str
    start: datetime
    end: datetime
    totals: UsageTotals
    data: list[UsageGroup] = Field(description="One row per group_by combination; empty without group_by")
