"""Usage: generation tokens, images and replica-seconds per day by project and by key; jobs and run time per kind."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from farm.api.deps import SessionDep
from farm.db.models import ApiKey, Job, Project, UsageRecord
from farm.ui.auth import UiUserDep
from farm.ui.charts import Chart, stacked
from farm.ui.web import render

router = APIRouter()




@router.get("/usage")
def usage_page(request: Request, user: UiUserDep, session: SessionDep, days: Annotated[int, Query(ge=1, le=90)] = 14) -> Response:
    org = user.principal.org_id
    today = datetime.now(timezone.utc).date()
    span = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    start = datetime.combine(span[0], time.min, tzinfo=timezone.utc)
    names = _names(session, org)
    charts: list[Chart] = []
    for label, group in (("project", UsageRecord.project_id), ("key", UsageRecord.key_id)):
        per = _usage_by(session, org, start, group)
        for metric, unit in (("tokens", "tokens"), ("images", "images"), ("replica_seconds", "replica-s")):
            series = _series(span, {(names.get(g or "", g or "none"), d): v[metric] for (g, d), v in per.items()})
            charts.append(stacked(f"{metric.replace('_', '-')} per day by {label}", unit, span, series))
    jobs, run_s = _jobs_by_kind(session, org, start)
    charts.append(stacked("jobs finished per day by kind", "jobs", span, _series(span, jobs)))
    charts.append(stacked("job run time per day by kind", "s", span, _series(span, run_s)))
    return render(request, "usage.html", charts=charts, days=days)


def _names(session: Session, org: str) -> dict[str, str]:
    projects = session.execute(select(Project.id, Project.name).where(Project.org_id == org))
    keys = session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.org_id == org))
    return {i: n for i, n in [*projects, *keys]}


def _usage_by(session: Session, org: str, start: datetime, group) -> dict[tuple[str | None, date], dict[str, float]]:  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    day = func.date(UsageRecord.created_at) if dialect == "sqlite" else cast(func.timezone("UTC", UsageRecord.created_at), Date)
    rows = session.execute(
        select(group, day, func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), func.sum(UsageRecord.images),
               func.sum(UsageRecord.replica_seconds))
        .where(UsageRecord.org_id == org, UsageRecord.created_at >= start).group_by(group, day)
    )
    return {(g, _as_date(d)): {"tokens": float(t or 0), "images": float(i or 0), "replica_seconds": float(s or 0)} for g, d, t, i, s in rows}


def _jobs_by_kind(session: Session, org: str, start: datetime) -> tuple[dict[tuple[str, date], float], dict[tuple[str, date], float]]:
    """Jobs that finished in the window, by kind and day: how many, and their seconds from start to finish."""
    counts: dict[tuple[str, date], float] = defaultdict(float)
    seconds: dict[tuple[str, date], float] = defaultdict(float)
    rows = session.execute(
        select(Job.kind, Job.started_at, Job.finished_at).where(Job.org_id == org, Job.finished_at >= start).limit(100_000)
    )
    for kind, started, finished in rows:
        key = (kind, finished.astimezone(timezone.utc).date())
        counts[key] += 1
        if started is not None:
            seconds[key] += max(0.0, (finished - started).total_seconds())
    return counts, seconds


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _series(span: list[date], values: dict[tuple[str, date], float]) -> dict[str, list[float]]:
    index = {d: i for i, d in enumerate(span)}
    out: dict[str, list[float]] = {}
    for (label, day), v in values.items():
        if day in index and v:
            out.setdefault(label, [0.0] * len(span))[index[day]] += v
    return out
