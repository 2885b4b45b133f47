"""Usage of the generation API: recorded per request, summed per org, project, key and model.

What is counted per request: prompt and completion tokens (as the engine
reports them), images returned, and replica-seconds. A replica-second is one
second of one Serve replica's time spent on the request: for diffusion, the
replica measures each pipeline call and splits it over the images in it (so
batching makes images cheaper, and nothing is counted twice); for LLMs,
whose engine interleaves many requests, it is the time from sending the
request to Serve to its last byte, an upper bound of the request's share.

Recording must not slow the request down: :class:`UsageRecorder` queues
records and a background thread writes them in batches (one transaction per
batch). ``flush()`` waits for what is queued, so a usage query right after a
request sees it; shutdown flushes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.db import Database
from farm.db.models import UsageRecord, utcnow

log = logging.getLogger("farm.usage")

GroupBy = Literal["project", "key", "model", "endpoint"]
_COLUMNS = {
    "project": UsageRecord.project_id,
    "key": UsageRecord.key_id,
    "model": UsageRecord.model,
    "endpoint": UsageRecord.endpoint,
}


@dataclass
class Usage:
    """One request's usage, as the front door saw it."""

    org_id: str
    key_id: str | None
    project_id: str | None
    endpoint: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    replica_seconds: float = 0.0
    created_at: datetime = field(default_factory=utcnow)

    def row(self) -> UsageRecord:
        return UsageRecord(
            org_id=self.org_id,
            key_id=self.key_id,
            project_id=self.project_id,
            endpoint=self.endpoint,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            images=self.images,
            replica_seconds=self.replica_seconds,
            created_at=self.created_at,
        )


class UsageRecorder:
    """A queue and one writer thread: ``record`` never blocks on the database."""

    def __init__(self, db: Database, *, batch_size: int = 200, idle_s: float = 0.2) -> None:
        self.db = db
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._queue: queue.Queue[Usage | threading.Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="farm-usage", daemon=True)
            self._thread.start()

    def record(self, usage: Usage) -> None:
        self._queue.put_nowait(usage)

    def flush(self, timeout: float = 30) -> bool:
        """Wait until everything recorded so far is written (True) or ``timeout`` passes."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put_nowait(done)
        return done.wait(timeout)

    def stop(self, timeout: float = 30) -> None:
        if self._thread is None:
            return
        self._queue.put_nowait(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        """Write what arrives within ``idle_s`` of the first record as one batch."""
        while True:
            item = self._queue.get()
            pending: list[Usage] = []
            waiters: list[threading.Event] = []
            stop = False
            deadline = time.monotonic() + self._idle_s
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    pending.append(item)
                if len(pending) >= self._batch_size:
                    break
                try:
                    # A flush or stop drains what is queued and writes at once.
                    wait = 0 if (waiters or stop) else max(0.0, deadline - time.monotonic())
                    item = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(pending)
            for waiter in waiters:
                waiter.set()
            if stop:
                return

    def _write(self, records: list[Usage]) -> None:
        if not records:
            return
        try:
            with self.db.session() as session:
                session.add_all([r.row() for r in records])
                session.commit()
        except Exception:  # the API keeps serving; the loss is logged loudly
            log.exception("could not write %d usage records", len(records))


@dataclass
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    replica_seconds: float = 0.0


def summarize(
    session: Session,
    org_id: str,
    start: datetime,
    end: datetime,
    *,
    group_by: list[GroupBy] | None = None,
    project_id: str | None = None,
    key_id: str | None = None,
) -> tuple[Totals, list[tuple[dict[str, str | None], Totals]]]:
    """Totals of ``org_id`` in ``[start, end)`` and, if asked, per group."""
    sums = (
        func.count(UsageRecord.id),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
        func.coalesce(func.sum(UsageRecord.images), 0),
        func.coalesce(func.sum(UsageRecord.replica_seconds), 0.0),
    )
    where = [UsageRecord.org_id == org_id, UsageRecord.created_at >= start, UsageRecord.created_at < end]
    if project_id is not None:
        where.append(UsageRecord.project_id == project_id)
    if key_id is not None:
        where.append(UsageRecord.key_id == key_id)
    total = _totals(session.execute(select(*sums).where(*where)).one())
    groups: list[tuple[dict[str, str | None], Totals]] = []
    if group_by:
        cols = [_COLUMNS[g] for g in group_by]
        rows = session.execute(select(*cols, *sums).where(*where).group_by(*cols).order_by(*cols)).all()
        for row in rows:
            groups.append(({g: row[i] for i, g in enumerate(group_by)}, _totals(row[len(cols):])))
    return total, groups


def _totals(row: tuple[object, ...]) -> Totals:
    requests, prompt, completion, images, seconds = row
    return Totals(int(requests), int(prompt), int(completion), int(images), float(seconds))  # type: ignore[arg-type]
