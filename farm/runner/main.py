"""The Ray Job entrypoint: ``python -m farm.runner <job-id>``.

Loads the job, runs its kind's pipeline, and settles the final state. An
exception (or a kill) leaves the job running for the dispatcher to notice
and retry; only a pipeline that reaches its end, or is cancelled, settles it.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from types import FrameType

from sqlalchemy.orm import Session

import kinds
from farm.db import Database, Job
from farm.jobs.service import add_event, failed_items, recount, transition
from farm.jobs.states import JobState
from farm.runner.context import Cancelled, JobContext
from farm.runner_env import runner_settings
from farm.storage import open_store

log = logging.getLogger("farm.runner")


def _sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise Cancelled()  # Ray's stop_job sends SIGTERM first


def settle(ctx: JobContext, cancelled: bool) -> JobState:
    return ctx.transaction(lambda s: _settle(s, ctx, cancelled))


def _settle(s: Session, ctx: JobContext, cancelled: bool) -> JobState:
    """Count the items and move the job to its final state (once: a settled job is left as it is)."""
    job = s.get(Job, ctx.job_id)
    assert job is not None, ctx.job_id
    recount(s, job)
    state = JobState(job.state)
    if state.terminal:
        return state
    if cancelled or state is JobState.cancel_requested:
        target, error = JobState.cancelled, None
    else:
        done = job.succeeded + job.failed
        share = job.failed / done if done else 0.0
        limit = ctx.spec.max_failed_fraction()
        if job.failed and share > limit:
            target, error = JobState.failed, f"{job.failed} of {done} items failed (more than {limit:.0%})"
        else:
            target, error = JobState.succeeded, None
    failed = failed_items(s, job.id) if job.failed else []
    if failed:
        add_event(s, job.id, "error", failed_items=failed)
        if error is not None:  # the first cause, so the job's own error says what went wrong
            error += f"; item {failed[0]['index']}: {failed[0]['error']}"[:2000]
    transition(s, job, target, error=error)
    s.commit()
    return target


def main(job_id: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = runner_settings()  # secrets from the node or the farm's 0600 file, never from the submission
    kinds.load(settings.extra_kinds)
    db = Database.of(settings.db)

    def claim(s: Session) -> Job | None:
        job = s.get(Job, job_id)
        if job is None or job.state not in (JobState.running.value, JobState.cancel_requested.value):
            log.warning("job %s is %s; nothing to run", job_id, job.state if job else "missing")
            return None
        job.runner_pid = os.getpid()
        add_event(s, job.id, "runner", attempt=job.attempts, pid=os.getpid(), ray_job_id=job.ray_job_id)
        s.commit()
        return job

    job = db.transaction(claim, wait_s=settings.db.outage_s)
    if job is None:
        return 0
    kind = kinds.get_kind(job.kind)
    ctx = JobContext(job, kinds.parse_spec(job.kind, job.spec), settings=settings, db=db, store=open_store(settings, ride_out_outages=True))
    signal.signal(signal.SIGTERM, _sigterm)
    log.info("job %s (%s) attempt %d starting", job_id, kind.name, ctx.attempt)
    cancelled = False
    try:
        importlib.import_module(kind.pipeline).run(ctx)
    except Cancelled:
        cancelled = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # settle without interruption
        ctx.flush()
    state = settle(ctx, cancelled)
    log.info("job %s %s", job_id, state.value)
    return 0


def cli() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m farm.runner <job-id>")
    sys.exit(main(sys.argv[1]))
