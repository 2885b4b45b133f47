"""Usage queries for one org; the recorder is flushed first so a caller sees its own requests."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from farm.accounts import Principal
from farm.api.routes.openai.state import Generation
from farm.api.runtime import Runtime
from farm.openai.usage import UsageGroup, UsageReport, UsageTotals
from farm.usage import GroupBy, summarize


def usage_report(
    gen: Generation,
    rt: Runtime,
    principal: Principal,
    start: datetime,
    end: datetime,
    group_by: list[GroupBy],
    project_id: str | None,
    key_id: str | None,
) -> UsageReport:
    """Runs in a worker thread."""
    gen.usage.flush()
    with rt.db.session() as session:
        totals, groups = summarize(
            session, principal.org_id, start, end, group_by=group_by, project_id=project_id, key_id=key_id
        )
    return UsageReport(
        org_id=principal.org_id,
        start=start,
        end=end,
        totals=UsageTotals(**asdict(totals)),
        data=[UsageGroup(**asdict(t), **{f"{g}_id" if g in ("project", "key") else g: v for g, v in keys.items()}) for keys, t in groups],
    )
