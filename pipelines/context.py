"""What a pipeline sees of the farm while it runs: its spec, its items, its outputs.

Progress and results flow back through the database and the object store,
never through the API process. Item outcomes are buffered and written in
batches; items finished by an earlier attempt are reported so they are
skipped, which makes a retried runner resume instead of starting over.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from farm import assets as asset_service
from farm.accounts import Principal
from farm.db import Database, Job, Project, Role
from kinds import JobSpec
from farm.jobs.service import add_event, record_items, recorded_items
from farm.jobs.states import JobState
from farm.settings import Settings
from farm.storage import ObjectStore


class Cancelled(Exception):
    """Raised inside a pipeline when the user asked the job to stop."""


@dataclass
class JobContext:
    job_id: str
    spec: JobSpec
    attempt: int
    settings: Settings
    db: Database
    store: ObjectStore
    flush_every_s: float = 0.5
    _pending: list[tuple[int, bool, str | None]] = field(default_factory=list)
    _last_flush: float = 0.0
    _last_cancel_check: float = 0.0
    _cancel: bool = False

    def job(self, session: Any) -> Job:
        job = session.get(Job, self.job_id)
        assert job is not None, self.job_id
        return job

    def done_items(self) -> set[int]:
        """Items an earlier attempt already finished (succeeded or failed)."""
        with self.db.session() as s:
            return recorded_items(s, self.job_id)

    def set_total(self, total: int) -> None:
        with self.db.session() as s:
            job = self.job(s)
            job.total = total
            add_event(s, job.id, "progress", total=total, succeeded=job.succeeded, failed=job.failed)
            s.commit()

    def item(self, index: int, ok: bool, error: str | None = None) -> None:
        self._pending.append((index, ok, error[:2000] if error else None))
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self, **progress: Any) -> None:
        outcomes, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        with self.db.session() as s:
            job = self.job(s)
            record_items(s, job, outcomes, self.attempt)
            add_event(s, job.id, "progress", total=job.total, succeeded=job.succeeded, failed=job.failed, **progress)
            if job.state == JobState.cancel_requested.value:
                self._cancel = True
            s.commit()

    def event(self, type: str, **data: Any) -> None:
        with self.db.session() as s:
            add_event(s, self.job_id, type, **data)
            s.commit()

    def check_cancel(self) -> None:
        """Cheap to call often: looks at the database at most twice a second."""
        if not self._cancel and time.monotonic() - self._last_cancel_check >= 0.5:
            self._last_cancel_check = time.monotonic()
            with self.db.session() as s:
                self._cancel = self.job(s).state == JobState.cancel_requested.value
        if self._cancel:
            raise Cancelled()

    def add_results(self, asset_ids: Iterable[str]) -> None:
        with self.db.session() as s:
            job = self.job(s)
            job.result_asset_ids = [*job.result_asset_ids, *[a for a in asset_ids if a not in job.result_asset_ids]]
            s.commit()

    def save_output(self, name: str, data: bytes | io.BufferedIOBase) -> str:
        """Store bytes as an asset of the job's project; returns the asset id."""
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with self.db.session() as s:
            job = self.job(s)
            project = s.get(Project, job.project_id)
            assert project is not None
            actor = Principal(key_id=job.submitted_by or "", org_id=job.org_id, role=Role.member)
            result = asset_service.ingest(s, self.store, actor, project, name, source, limit=self.settings.storage.max_upload_bytes)
            asset_id = result.asset.id
        self.add_results([asset_id])
        return asset_id

    @property
    def pid(self) -> int:
        return os.getpid()
