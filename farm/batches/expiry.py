"""Batches past their completion window: stop the job, then write what it has as the batch's files.

OpenAI's promise: when the window passes, requests without a result go to
the error file as ``batch_expired``, finished results stay in the output
file, and the batch ends ``expired``. The dispatcher's tick keeps it in two
steps, both driven by database state, so a restarted control plane picks up
where the last one stopped and a step run twice changes nothing:

1. :func:`expire_due` marks a queued or running batch job past its window
   (``expired_at``) and stops it the way a cancel does (queued → cancelled;
   running → cancel_requested: the runner stops between result parts, Ray
   stops it after the grace period). A runner already finalizing is left to
   finish, and its batch completes; once marked, a runner may not finalize
   (``BatchBook.begin_finalizing``), so only this module writes the files.
2. :func:`finalize_expired`, once the job has stopped, merges the result
   parts every attempt wrote (first line per custom_id, as the runner does)
   into the output file, the error parts plus one ``batch_expired`` line per
   request without a result into the error file, counts those requests as
   failed items, and publishes ``batch.expired``.

A crash between writing the files and recording them leaves at most an
unreferenced asset; the next tick writes them again.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import IO

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from farm import assets
from farm.accounts import Principal
from farm.batches import files
from farm.batches.events import publish_batch
from farm.batches.requests import split_lines
from farm.batches.status import EXPIRED_PHASE
from farm.db.models import Asset, Batch, File, Job, JobEvent, JobOutput, Project, Role, utcnow
from farm.jobs import outputs
from farm.jobs.service import add_event, record_items, recorded_items, transition
from farm.jobs.states import TERMINAL, JobState
from farm.openai.batch_lines import EXPIRED_MESSAGE, expired_line
from farm.storage import ObjectStore

log = logging.getLogger("farm.batches")
REASON = "the batch's completion window passed"


def expire_due(session: Session, window_s: float, now: datetime | None = None) -> list[str]:
    """Mark and stop the batches whose window has passed; returns their ids. The caller commits.

    The window is the earlier of the ``expires_at`` promised at creation and
    ``created_at`` + the farm's current window, so a lowered setting applies
    to batches already waiting.
    """
    now = now or utcnow()
    window = timedelta(seconds=window_s)
    due = session.execute(
        select(Batch, Job).join(Job, Job.id == Batch.job_id)
        .where(Job.state.in_([JobState.queued.value, JobState.running.value]), Batch.expired_at.is_(None),
               or_(Job.state == JobState.queued.value, Batch.phase != "finalizing"),  # a finalizing runner finishes
               or_(Batch.expires_at <= now, Batch.created_at <= now - window))
        .with_for_update()  # against a runner entering finalizing, or settling, at this moment
    ).all()
    for batch, job in due:
        batch.expired_at = now
        batch.expires_at = min(batch.expires_at, batch.created_at + window)
        target = JobState.cancelled if job.state == JobState.queued.value else JobState.cancel_requested
        transition(session, job, target, reason=REASON)
        log.info("batch %s expired; job %s %s", batch.id, job.id, target.value)
    return [batch.id for batch, _ in due]


def stopped(session: Session) -> list[str]:
    """Expired batches whose job has stopped and whose files are not written yet."""
    return list(session.scalars(
        select(Batch.id).join(Job, Job.id == Batch.job_id)
        .where(Batch.expired_at.is_not(None), Batch.phase != EXPIRED_PHASE, Job.state.in_([s.value for s in TERMINAL]))
    ))


def finalize_expired(session: Session, store: ObjectStore, batch_id: str, max_bytes: int) -> bool:
    """Write an expired batch's output and error files and count its unrun requests; False if already done."""
    batch = session.get(Batch, batch_id)
    job = session.get(Job, batch.job_id) if batch else None
    if batch is None or job is None or batch.phase == EXPIRED_PHASE or not JobState(job.state).terminal:
        return False
    requests = _input_lines(session, store, batch)
    recorded = recorded_items(session, job.id)
    first_line: dict[str, int] = {}
    for line, cid in requests:
        if cid is not None:
            first_line.setdefault(cid, line)
    outcomes: list[tuple[int, bool, str | None]] = []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        results: dict[str, bool] = {}  # custom_id → its line is in the output (True) or error (False) file
        n_out = _merge(store, _part_keys(session, job.id, "output"), out, results, True)
        n_err = _merge(store, _part_keys(session, job.id, "error"), err, results, False)
        expired = 0
        for line, cid in requests:
            if line in recorded:
                continue
            if cid is not None and cid in results and first_line[cid] == line:
                # its result part was written but the runner stopped before recording the item
                outcomes.append((line, results[cid], None if results[cid] else "see the batch's error file"))
                continue
            if cid is not None and cid not in results:
                err.write(expired_line(cid).encode() + b"\n")
                results[cid] = False
                n_err += 1
            outcomes.append((line, False, EXPIRED_MESSAGE))
            expired += 1
        actor = Principal(key_id=job.submitted_by or "", org_id=job.org_id, role=Role.member)
        project = session.get(Project, job.project_id)
        assert project is not None, job.project_id
        # ingest commits (only its asset row: nothing else has changed in this session yet)
        stored = {kind: _ingest(session, store, actor, project, job.id, f"{batch.id}_{kind}.jsonl", tmp, lines, max_bytes)
                  for kind, tmp, lines in (("output", out, n_out), ("error", err, n_err)) if lines or kind == "output"}
    # job-level output records here can only be a crashed earlier finalize's: a marked batch's runner never finalizes
    stale = {r.asset_id for r in session.scalars(select(JobOutput).where(JobOutput.job_id == job.id, JobOutput.item.is_(None)))}
    if stale:
        session.execute(delete(JobOutput).where(JobOutput.job_id == job.id, JobOutput.item.is_(None)))
        job.result_asset_ids = [a for a in job.result_asset_ids if a not in stale]
    file_ids: dict[str, str | None] = {"output": None, "error": None}
    for kind, asset in stored.items():
        outputs.record(session, job, None, f"{kind}_file", asset.id)
        file_ids[kind] = files.attach(session, actor, asset, f"{batch.id}_{kind}.jsonl", f"batch_{kind}").id
    batch.output_file_id, batch.error_file_id = file_ids["output"], file_ids["error"]
    job.total = max(job.total, len(requests))
    record_items(session, job, outcomes, job.attempts)
    batch.phase = EXPIRED_PHASE
    add_event(session, job.id, "batch", phase=EXPIRED_PHASE, expired=expired)
    publish_batch(session, batch, job)
    session.commit()
    log.info("batch %s: %d requests expired, %d results kept", batch.id, expired, job.succeeded)
    return True


def _input_lines(session: Session, store: ObjectStore, batch: Batch) -> list[tuple[int, str | None]]:
    """(line number, custom_id or None) of every line of the input file; none when the file is gone."""
    f = session.get(File, batch.input_file_id)
    asset = session.get(Asset, f.asset_id) if f else None
    if asset is None or asset.org_id != batch.org_id:
        return []
    return [(line, _custom_id(raw)) for line, raw in split_lines(store.get(asset.object_key))]


def _custom_id(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    cid = obj.get("custom_id") if isinstance(obj, dict) else None
    return cid if isinstance(cid, str) and cid else None


def _part_keys(session: Session, job_id: str, kind: str) -> list[str]:
    """Keys of every result part of ``kind`` any attempt wrote, in order (the runner's ``part`` events)."""
    events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "part").order_by(JobEvent.seq))
    return [e.data["key"] for e in events if e.data.get("kind") == kind]


def _merge(store: ObjectStore, keys: list[str], into: IO[bytes], seen: dict[str, bool], ok: bool) -> int:
    """Append the parts' lines to ``into``, the first per custom_id only; returns how many were written."""
    n = 0
    for key in keys:
        for _, raw in split_lines(store.get(key)):
            cid = json.loads(raw)["custom_id"]
            if cid in seen:
                continue
            seen[cid] = ok
            into.write(raw + b"\n")
            n += 1
    return n


def _ingest(session: Session, store: ObjectStore, actor: Principal, project: Project, job_id: str, name: str,
            tmp: IO[bytes], lines: int, max_bytes: int) -> Asset:
    tmp.seek(0)
    source = tmp if lines else io.BytesIO(b"\n")  # an empty output file still exists (assets cannot be empty)
    return assets.ingest(session, store, actor, project, name, source, limit=max_bytes, job_id=job_id).asset


def enforce(session_factory: Callable[[], Session], store: Callable[[], ObjectStore], window_s: float, max_bytes: int) -> None:
    """One round: stop the batches past their window, then finalize those whose job has stopped."""
    with session_factory() as s:
        expire_due(s, window_s)
        s.commit()
    with session_factory() as s:
        todo = stopped(s)
    for batch_id in todo:
        with session_factory() as s:
            finalize_expired(s, store(), batch_id, max_bytes)
