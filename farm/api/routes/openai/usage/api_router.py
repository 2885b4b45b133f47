"""GET /v1/usage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from farm.api.routes.openai.deps import GenerationDep, ReadingCaller, RuntimeDep
from farm.api.routes.openai.errors import ERROR_RESPONSES
from farm.api.routes.openai.route import OpenAIRoute
from farm.api.routes.openai.usage.serving import usage_report
from farm.openai.errors import OpenAIError
from farm.openai.usage import UsageReport

router = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses=ERROR_RESPONSES)
DEFAULT_WINDOW = timedelta(days=1)
# Python's datetime ends at year 9999; keep ranges well inside what both databases store.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)

Id = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z]{2,8}_[0-9a-f]{28}$")]


def _utc(value: datetime | None, default: datetime, param: str) -> datetime:
    value = default if value is None else value
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if not EARLIEST <= value <= LATEST:
        raise OpenAIError(400, f"{param} must be between {EARLIEST.date()} and {LATEST.date()}", param=param)
    return value


@router.get("/v1/usage", response_model=UsageReport)
async def usage(
    principal: ReadingCaller,
    gen: GenerationDep,
    rt: RuntimeDep,
    start: Annotated[datetime | None, Query(description="Inclusive, ISO 8601 or Unix seconds (UTC if no zone); default: end minus one day")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive; default: now")] = None,
    group_by: Annotated[list[Literal["project", "key", "model", "endpoint"]] | None, Query(description="Group rows by these (repeat the parameter)")] = None,
    project_id: Id = None,
    key_id: Id = None,
) -> UsageReport:
    """Usage of the caller's organization (tokens, images, replica-seconds) in [start, end)."""
    end_utc = _utc(end, datetime.now(timezone.utc), "end")
    start_utc = _utc(start, max(EARLIEST, end_utc - DEFAULT_WINDOW), "start")
    if start_utc > end_utc:
        raise OpenAIError(400, "start is after end", param="start")
    groups = list(dict.fromkeys(group_by or []))
    return await run_in_threadpool(usage_report, gen, rt, principal, start_utc, end_utc, groups, project_id, key_id)
