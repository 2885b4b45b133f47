"""A `batch.*` job's batch row, as its pipeline may touch it: phases, errors, parts, result files.

The pipeline validates, runs and writes result lines; this keeps the OpenAI
batch view in step (phase timestamps, `batch.<status>` events when the
status a client sees changes), stores the part objects results are written
to before their items are recorded, and turns the finished output and error
files into assets and files of the batch's project.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from sqlalchemy import select

from farm.accounts import Principal
from farm.batches import files
from farm.batches.events import publish_batch
from farm.batches.status import batch_status
from farm.db import Database
from farm.db.models import Asset, Batch, File, Job, JobEvent, Role, utcnow
from farm.jobs.service import transition
from farm.jobs.states import JobState
from farm.storage import ObjectStore
from kinds import JobSpec

PHASE_STAMPS = {"in_progress": "in_progress_at", "finalizing": "finalizing_at"}


@dataclass(frozen=True)
class BatchInfo:
    id: str
    endpoint: str
    input_key: str | None  # None: the input file is gone (deleted, or another organization's)
    input_size: int


class JobDoor(Protocol):
    """What the batch book uses of its job's context."""

    job_id: str
    org_id: str
    attempt: int
    spec: JobSpec

    def event(self, type: str, **data: Any) -> None: ...

    def save_output(self, item: int | None, output: str, name: str, data: bytes | BinaryIO) -> str: ...


class BatchBook:
    def __init__(self, ctx: JobDoor, db: Database, store: ObjectStore) -> None:
        self.ctx, self._db, self._store = ctx, db, store
        self.batch_id: str = ctx.spec.batch_id  # type: ignore[attr-defined]
        self._seq = 0

    def _rows(self, session: Any) -> tuple[Batch, Job]:
        batch, job = session.get(Batch, self.batch_id), session.get(Job, self.ctx.job_id)
        assert batch is not None and job is not None, "batch row missing"
        return batch, job

    def info(self) -> BatchInfo:
        def work(s: Any) -> Any:
            batch, _ = self._rows(s)
            f = s.get(File, batch.input_file_id)
            asset = s.get(Asset, f.asset_id) if f else None
            if asset is None or asset.org_id != batch.org_id:
                return BatchInfo(batch.id, batch.endpoint, None, 0)
            return BatchInfo(batch.id, batch.endpoint, asset.object_key, asset.size)

        return self.ctx.transaction(work)

    def set_phase(self, phase: str, **fields: Any) -> None:
        """Enter ``phase`` (stamping its ``*_at`` the first time) and set other batch fields."""
        def work(s: Any) -> Any:
            batch, job = self._rows(s)
            before = batch_status(batch, job)
            if batch.phase != phase and phase in PHASE_STAMPS:
                setattr(batch, PHASE_STAMPS[phase], utcnow())
            batch.phase = phase
            for k, v in fields.items():
                setattr(batch, k, v)
            if batch_status(batch, job) != before:  # a cancelling batch stays "cancelling" while it finalizes
                publish_batch(s, batch, job)
            s.commit()

        self.ctx.transaction(work)
        self.ctx.event("batch", phase=phase)

    def begin_finalizing(self) -> bool:
        """Enter the finalizing phase, unless the completion window passed first (then `farm.batches.expiry` writes the files).

        The batch row is locked, so the dispatcher either sees this runner
        finalizing and lets it finish, or has marked the batch and this refuses.
        """
        def work(s: Any) -> bool:
            batch = s.get(Batch, self.batch_id, with_for_update=True)
            job = s.get(Job, self.ctx.job_id)
            assert batch is not None and job is not None, "batch row missing"
            if batch.expired_at is not None:
                return False
            before = batch_status(batch, job)
            if batch.phase != "finalizing":
                batch.finalizing_at = utcnow()
            batch.phase = "finalizing"
            if batch_status(batch, job) != before:
                publish_batch(s, batch, job)
            s.commit()
            return True

        if not self.ctx.transaction(work):
            return False
        self.ctx.event("batch", phase="finalizing")
        return True

    def set_errors(self, errors: list[dict[str, Any]]) -> None:
        """The batch's validation errors, as ``GET /v1/batches/{id}`` shows them."""
        def work(s: Any) -> Any:
            batch, _ = self._rows(s)
            batch.errors = errors
            s.commit()

        self.ctx.transaction(work)

    def fail(self, message: str, *, code: str = "invalid_file", param: str = "input_file_id") -> None:
        """The batch cannot run at all (its input file, or its model's engine): the batch and its job fail before any request runs."""
        def work(s: Any) -> Any:
            batch, job = self._rows(s)
            batch.errors = [{"code": code, "message": message, "param": param, "line": None}]
            why = "validation failed" if code == "invalid_file" else code.replace("_", " ")
            transition(s, job, JobState.failed, error=f"{why}: {message}")
            s.commit()

        self.ctx.transaction(work)

    def put_part(self, kind: str, data: bytes, lines: int) -> str:
        """Store one part of result lines (``kind``: output or error); returns its key."""
        self._seq += 1
        key = f"orgs/{self.ctx.org_id}/batches/{self.batch_id}/parts/{kind}-a{self.ctx.attempt:02d}-{self._seq:05d}.jsonl"
        self._store.put(key, io.BytesIO(data), length=len(data), content_type="application/jsonl")
        self.ctx.event("part", key=key, kind=kind, lines=lines)
        return key

    def parts(self, kind: str) -> list[str]:
        """Keys of every part of ``kind`` written by any attempt, in the order they were written."""
        def work(s: Any) -> Any:
            events = s.scalars(select(JobEvent).where(JobEvent.job_id == self.ctx.job_id, JobEvent.type == "part").order_by(JobEvent.seq))
            return [e.data["key"] for e in events if e.data["kind"] == kind]

        return self.ctx.transaction(work)

    def attach_result_file(self, kind: str, name: str, data: bytes | BinaryIO) -> str:
        """Save the finished ``kind`` (output or error) file as the job's ``<kind>_file`` output; returns its file id."""
        asset_id = self.ctx.save_output(None, f"{kind}_file", name, data)
        def work(s: Any) -> Any:
            asset = s.get(Asset, asset_id)
            assert asset is not None
            _, job = self._rows(s)
            actor = Principal(key_id=job.submitted_by or "", org_id=job.org_id, role=Role.member)
            f = files.attach(s, actor, asset, name, f"batch_{kind}")
            s.commit()
            return f.id

        return self.ctx.transaction(work)
