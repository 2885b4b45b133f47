"""Part records: the finished pieces of a job's items, so a retried runner does only what is missing.

A long item (a video rendered chunk by chunk) records each piece as it is
done, with the intermediate object holding it. A later attempt reads them
back and skips those pieces. Once the item is assembled its pieces' objects
are dropped (the records stay, as evidence of who made what); when the job
ends failed or cancelled, objects and records both go, so a retry starts
clean and no intermediate bytes are left behind.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from farm.db.models import JobPart
from farm.storage import ObjectStore

log = logging.getLogger("farm.jobs.parts")


def record(session: Session, job_id: str, item: int, part: str, *, attempt: int, worker: str | None = None,
           object_key: str | None = None, data: dict[str, Any] | None = None) -> JobPart:
    """Record ``part`` of ``item`` as done; a part recorded before keeps its first record. Flushes."""
    row = session.scalars(select(JobPart).where(JobPart.job_id == job_id, JobPart.item == item, JobPart.part == part)).one_or_none()
    if row is not None:
        return row
    row = JobPart(job_id=job_id, item=item, part=part, attempt=attempt, worker=worker, object_key=object_key, data=data or {})
    session.add(row)
    session.flush()
    return row


def parts_of(session: Session, job_id: str, item: int | None = None) -> list[JobPart]:
    """A job's part records (of one item, if given), by item and part name."""
    stmt = select(JobPart).where(JobPart.job_id == job_id)
    if item is not None:
        stmt = stmt.where(JobPart.item == item)
    return list(session.scalars(stmt.order_by(JobPart.item, JobPart.part)))


def release(session: Session, store: ObjectStore, job_id: str, item: int, *, forget: bool = False) -> int:
    """Drop the intermediate objects of ``item``'s parts (and, with ``forget``, the records); returns objects dropped."""
    dropped = 0
    for row in parts_of(session, job_id, item):
        if row.object_key:
            _delete(store, row.object_key)
            row.object_key = None
            dropped += 1
    if forget:
        session.execute(delete(JobPart).where(JobPart.job_id == job_id, JobPart.item == item))
    session.flush()
    return dropped


def discard(session: Session, store: ObjectStore, job_id: str) -> int:
    """A job that ended failed or cancelled: every part object and record goes; returns objects dropped."""
    rows = parts_of(session, job_id)
    for row in rows:
        if row.object_key:
            _delete(store, row.object_key)
    session.execute(delete(JobPart).where(JobPart.job_id == job_id))
    session.flush()
    return sum(1 for r in rows if r.object_key)


def _delete(store: ObjectStore, key: str) -> None:
    try:
        store.delete(key)
    except Exception:  # a store hiccup must not stop a job from settling; the key is logged for a sweep
        log.exception("could not delete intermediate object %s", key)
