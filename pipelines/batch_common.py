"""What `batch.chat` and `batch.images` share: validate, run, write parts, finalize.

Results are written as part objects in the object store *before* their
items are recorded, so a recorded item always has its line somewhere; a
runner killed in between reruns the item and finalize keeps the first line
per custom_id. Finalize streams the parts into one output and one error
file, so each custom_id appears exactly once, resumed or not.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from farm.accounts import Principal
from farm.batches import files as file_service
from farm.batches.events import publish_batch
from farm.batches.status import batch_status
from farm.batches.requests import BatchRequest, LineError, Validator, split_lines
from farm.db.models import Asset, Batch, File, JobEvent, Role, utcnow
from pipelines.context import Cancelled, JobContext

PART_LINES = 256
MAX_STORED_ERRORS = 1000


class BatchInvalid(Exception):
    """The whole file cannot run (too big, too many lines): the batch fails in validation."""


@dataclass
class BatchRun:
    ctx: JobContext
    batch: Batch
    attempt: int
    _seq: int = 0

    @classmethod
    def load(cls, ctx: JobContext) -> BatchRun:
        with ctx.db.session() as s:
            batch = s.get(Batch, ctx.spec.batch_id)  # type: ignore[attr-defined]
            assert batch is not None, "batch row missing"
            s.expunge(batch)
        return cls(ctx, batch, ctx.attempt)

    # -- state on the batch row -----------------------------------------------------------

    def set_phase(self, phase: str, **fields: Any) -> None:
        with self.ctx.db.session() as s:
            batch = s.get(Batch, self.batch.id)
            assert batch is not None
            job = self.ctx.job(s)
            before = batch_status(batch, job)
            batch.phase = phase
            for k, v in fields.items():
                setattr(batch, k, v)
            if batch_status(batch, job) != before:  # a cancelling batch stays "cancelling" while it finalizes
                publish_batch(s, batch, job)
            s.commit()
        self.ctx.event("batch", phase=phase)

    # -- validation ---------------------------------------------------------------------------

    def validate(self, models: set[str], out: Path) -> int:
        """Check every line; write runnable, not-yet-done requests to ``out``; return their count."""
        spec = self.ctx.spec
        with self.ctx.db.session() as s:
            f = s.get(File, self.batch.input_file_id)
            asset = s.get(Asset, f.asset_id) if f else None
            if asset is None or asset.org_id != self.batch.org_id:
                raise BatchInvalid("the input file no longer exists")
            key, size = asset.object_key, asset.size
        if size > spec.max_bytes:  # type: ignore[attr-defined]
            raise BatchInvalid(f"the input file is {size} bytes; the limit is {spec.max_bytes}")  # type: ignore[attr-defined]
        done = self.ctx.done_items()
        validator = Validator(self.batch.endpoint, models, spec.max_lines)  # type: ignore[attr-defined]
        errors: list[LineError] = []
        runnable = 0
        with out.open("w") as fh:
            for line, raw in split_lines(self.ctx.store.get(key)):
                checked = validator.check(line, raw)
                if isinstance(checked, LineError):
                    if checked.code == "too_many_requests":
                        raise BatchInvalid(checked.message)
                    errors.append(checked)
                elif line not in done:
                    fh.write(json.dumps({"line": checked.line, "custom_id": checked.custom_id, "body": json.dumps(checked.body)}) + "\n")
                    runnable += 1
        self.ctx.set_total(validator.count)
        with self.ctx.db.session() as s:
            batch = s.get(Batch, self.batch.id)
            assert batch is not None
            batch.errors = [e.public() for e in errors[:MAX_STORED_ERRORS]]
            s.commit()
        self.write_part([error_line(e.custom_id, e.code, e.message, 400) for e in errors if e.custom_id and e.line not in done], kind="error")
        for e in errors:
            if e.line not in done:
                self.ctx.item(e.line, False, e.message)
        self.ctx.flush()
        return runnable

    # -- parts ------------------------------------------------------------------------------------

    def write_part(self, lines: list[str], kind: str) -> None:
        if not lines:
            return
        self._seq += 1
        key = f"orgs/{self.batch.org_id}/batches/{self.batch.id}/parts/{kind}-a{self.attempt:02d}-{self._seq:05d}.jsonl"
        data = ("\n".join(lines) + "\n").encode()
        self.ctx.store.put(key, io.BytesIO(data), length=len(data), content_type="application/jsonl")
        self.ctx.event("part", key=key, kind=kind, lines=len(lines))

    def consume(self, rows: Iterator[dict[str, Any]], to_line: Callable[[dict[str, Any]], tuple[bool, str]]) -> None:
        """Write result rows as parts, then record their items; stop between parts on cancel."""
        ok_lines: list[str] = []
        err_lines: list[str] = []
        outcomes: list[tuple[int, bool, str | None]] = []
        last = time.monotonic()

        def flush() -> None:
            nonlocal ok_lines, err_lines, outcomes, last
            self.write_part(ok_lines, "output")
            self.write_part(err_lines, "error")
            for idx, ok, err in outcomes:
                self.ctx.item(idx, ok, err)
            self.ctx.flush()
            ok_lines, err_lines, outcomes, last = [], [], [], time.monotonic()

        for row in rows:
            ok, line = to_line(row)
            (ok_lines if ok else err_lines).append(line)
            outcomes.append((int(row["line"]), ok, None if ok else str(row.get("error"))[:500]))
            if len(outcomes) >= PART_LINES or time.monotonic() - last > 1.0:
                flush()
                self.ctx.check_cancel()
        flush()

    # -- finalize ---------------------------------------------------------------------------------

    def finalize(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish writing the files even while being stopped
        self.set_phase("finalizing", finalizing_at=utcnow())
        with self.ctx.db.session() as s:
            parts = [e.data for e in s.scalars(select(JobEvent).where(JobEvent.job_id == self.ctx.job_id, JobEvent.type == "part").order_by(JobEvent.seq))]
        seen: set[str] = set()
        out_ids: dict[str, str | None] = {}
        for kind in ("output", "error"):
            with tempfile.TemporaryFile() as tmp:
                n = 0
                for part in (p for p in parts if p["kind"] == kind):
                    for _, raw in split_lines(self.ctx.store.get(part["key"])):
                        cid = json.loads(raw)["custom_id"]
                        if cid in seen:
                            continue
                        seen.add(cid)
                        tmp.write(raw + b"\n")
                        n += 1
                out_ids[kind] = self._save_file(tmp, kind, n) if n or kind == "output" else None
        self.set_phase("finalizing", output_file_id=out_ids["output"], error_file_id=out_ids["error"])

    def _save_file(self, tmp: Any, kind: str, lines: int) -> str:
        tmp.seek(0)
        if lines == 0:
            tmp = io.BytesIO(b"\n")  # an empty output file still exists (assets cannot be empty)
        name = f"{self.batch.id}_{kind}.jsonl"
        asset_id = self.ctx.save_output(name, tmp)
        with self.ctx.db.session() as s:
            asset = s.get(Asset, asset_id)
            assert asset is not None
            job = self.ctx.job(s)
            actor = Principal(key_id=job.submitted_by or "", org_id=job.org_id, role=Role.member)
            f = file_service.attach(s, actor, asset, name, f"batch_{kind}")
            s.commit()
            return f.id


def request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def output_line(custom_id: str, body: dict[str, Any]) -> str:
    return json.dumps({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id,
                       "response": {"status_code": 200, "request_id": request_id(), "body": body}, "error": None})


def error_line(custom_id: str | None, code: str, message: str, status: int = 400) -> str:
    err = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id,
                       "response": {"status_code": status, "request_id": request_id(), "body": {"error": err}},
                       "error": {"code": code, "message": message}})


def run_batch(ctx: JobContext, models: set[str], execute: Callable[[BatchRun, Path], None]) -> None:
    """The shape of every batch kind: validate, execute (kind-specific), finalize — also on cancel."""
    from farm.jobs.service import transition
    from farm.jobs.states import JobState

    run = BatchRun.load(ctx)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run.batch.id}-"))
    requests = workdir / "requests.jsonl"
    try:
        try:
            runnable = run.validate(models, requests)
        except BatchInvalid as exc:
            with ctx.db.session() as s:
                batch = s.get(Batch, run.batch.id)
                assert batch is not None
                batch.errors = [{"code": "invalid_file", "message": str(exc), "param": "input_file_id", "line": None}]
                transition(s, ctx.job(s), JobState.failed, error=f"validation failed: {exc}")
                s.commit()
            return
        run.set_phase("in_progress", in_progress_at=utcnow())
        try:
            if runnable:
                execute(run, requests)
        except Cancelled:
            run.finalize()
            raise
        run.finalize()
    finally:
        for p in workdir.iterdir():
            p.unlink()
        os.rmdir(workdir)


def ray_init() -> None:
    import ray
    import ray.data

    from cluster.local import ensure_auth_env

    if not ray.is_initialized():
        ensure_auth_env()
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    # Progress is the batch's request_counts; Ray Data's bars would only redraw into a job
    # log nobody reads, on the cores the engine needs.
    ray.data.DataContext.get_current().enable_progress_bars = False
