"""Which queued jobs run next: priority first, then fair share between organizations.

Each org offers only its best queued job, so an org with a thousand queued
jobs competes with one candidate at a time, exactly like an org with one.
Among equal priorities the org with the fewest running jobs goes first, then
the org served least recently: a round robin, even when jobs run one by one.
Workflow runs are no Ray jobs: they neither wait here nor count as running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.db.models import Job
from farm.jobs.states import ACTIVE, JobState
from kinds.workflow import RUN_KIND


def running_per_org(session: Session) -> Counter[str]:
    rows = session.execute(
        select(Job.org_id, func.count()).where(Job.state.in_([s.value for s in ACTIVE]), Job.kind != RUN_KIND).group_by(Job.org_id)
    )
    return Counter({org: int(n) for org, n in rows})


def next_jobs(session: Session, slots: int, held: Collection[str] = ()) -> list[str]:
    """Ids of up to ``slots`` queued jobs, in the order they should start; ``held`` ones wait (GPU jobs beyond the farm's share)."""
    if slots <= 0:
        return []
    running = running_per_org(session)
    orgs = list(session.scalars(select(Job.org_id).where(Job.state == JobState.queued.value, Job.kind != RUN_KIND).distinct()))
    queues: dict[str, list[Job]] = {}
    for org in orgs:
        waiting = select(Job).where(Job.org_id == org, Job.state == JobState.queued.value, Job.kind != RUN_KIND)
        if held:
            waiting = waiting.where(Job.id.not_in(list(held)))
        queues[org] = list(session.scalars(waiting.order_by(Job.priority.desc(), Job.id).limit(slots)))
    never = datetime.min.replace(tzinfo=timezone.utc)
    served = dict(session.execute(select(Job.org_id, func.max(Job.started_at)).where(Job.org_id.in_(orgs)).group_by(Job.org_id)).all())
    last = {org: served.get(org) or never for org in orgs}
    chosen: list[str] = []
    while len(chosen) < slots and any(queues.values()):
        best = min(
            (org for org, q in queues.items() if q),
            key=lambda org: (-queues[org][0].priority, running[org], last[org], queues[org][0].id),
        )
        job = queues[best].pop(0)
        chosen.append(job.id)
        running[best] += 1
        last[best] = datetime.now(timezone.utc)
    return chosen
