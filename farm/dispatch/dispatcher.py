"""The dispatcher loop: lease → reconcile running jobs with Ray → expire batches past their window → plan GPUs → start queued ones → ask for GPUs → sweep ended jobs' parts.

All state is in the database, so any control-plane process can take over:
a restarted process re-attaches to running jobs through their Ray job ids.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import threading
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from farm.batches import expiry
from farm.db import Database, Job, JobEvent, JobPart
from farm.db.models import utcnow
from farm.dispatch import lease
from farm.dispatch.autoscaler import AutoscalerRequest
from farm.dispatch.demand import Plan, QueueDemand, registry_resources
from farm.dispatch.selection import next_jobs
from farm.jobs import parts
from farm.jobs.service import transition
from farm.jobs.states import ACTIVE, JobState
from farm.runner_env import SECRET_NAMES_ENV, SECRETS_FILE_ENV, job_env, runner_secrets_path, write_secrets_file
from farm.settings import Settings
from farm.storage import ObjectStore, open_store
from farm.workflows import engine as workflows
from farm.workflows import triggers
from kinds.workflow import RUN_KIND

log = logging.getLogger("farm.dispatch")
LEASE_NAME = "dispatcher"


class Dispatcher:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._client: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.is_leader = False
        self._secrets_written: dict[str, str] | None = None
        self._store: ObjectStore | None = None
        self._queue_demand: QueueDemand | None = None
        self.autoscaler = AutoscalerRequest(self.client, self.python)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="farm-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.is_leader:
            with self.db.session() as s:
                lease.release(s, LEASE_NAME, self.holder)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.dispatch.poll_s):
            try:
                self.tick()
            except Exception:  # keep dispatching through transient errors
                log.exception("dispatch tick failed")

    # -- one round ------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            from cluster.local import job_client

            self._client = job_client(self.settings.ray.dashboard_url or "")
        return self._client

    def tick(self) -> None:
        with self.db.session() as s:
            self.is_leader = lease.acquire(s, LEASE_NAME, self.holder, self.settings.dispatch.lease_ttl_s)
        if not self.is_leader:
            return
        self.reconcile()
        self.expire_batches()
        triggers.fire_due(self.db)  # cron triggers: one run per schedule slot, under this lease
        workflows.advance_all(self.db, self.settings)  # runs never go to Ray: their steps become jobs here
        gpus = self.gpu_plan()
        self.start_queued(gpus)
        if self.settings.dispatch.gpu_demand:
            self.autoscaler.update(gpus.request)
        self.sweep_parts()

    def gpu_plan(self) -> Plan:
        """Which GPU jobs the farm makes room for now, and what that asks of Ray's autoscaler (`farm.dispatch.demand`)."""
        d = self.settings.dispatch
        with self.db.session() as s:
            return self.queue_demand().plan(s, d.max_gpus, d.org_gpu_share)

    def queue_demand(self) -> QueueDemand:
        if self._queue_demand is None:
            from serve.demo import load_registry  # farm imports serve only when it needs the registry

            models = self.settings.models
            self._queue_demand = QueueDemand(registry_resources(lambda: load_registry(models.registry_file, models.cache_dir)))
        return self._queue_demand

    def reconcile(self) -> None:
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.state.in_([a.value for a in ACTIVE]), Job.kind != RUN_KIND)).all():
                self._reconcile(s, job)

    def _reconcile(self, s: Session, job: Job) -> None:
        from ray.job_submission import JobStatus

        status, message = self._ray_status(job.ray_job_id)
        if status in (JobStatus.PENDING, JobStatus.RUNNING):
            if job.state == JobState.cancel_requested.value and self._grace_over(s, job):
                self.client().stop_job(job.ray_job_id)
            return
        s.refresh(job)  # the runner may have just finished it
        if JobState(job.state).terminal or JobState(job.state) not in ACTIVE:
            return
        if job.state == JobState.cancel_requested.value:
            transition(s, job, JobState.cancelled)
        else:
            what = "vanished from Ray" if status is None else f"ended {status.value.lower()} before finishing"
            self._requeue_or_fail(s, job, f"runner {what}" + (f": {message}" if message else ""))
        s.commit()

    def expire_batches(self) -> None:
        """Batches past their completion window stop and end `expired`, their results kept (`farm.batches.expiry`)."""
        def store() -> ObjectStore:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

        expiry.enforce(self.db.session, store, self.settings.batch.completion_window_s, self.settings.storage.max_upload_bytes)

    def sweep_parts(self) -> None:
        """Intermediate objects of jobs that ended failed or cancelled (by a runner, this loop or the API) go."""
        ended = (JobState.failed.value, JobState.cancelled.value)
        with self.db.session() as s:
            job_ids = s.scalars(select(JobPart.job_id).join(Job, Job.id == JobPart.job_id).where(Job.state.in_(ended)).distinct()).all()
            for job_id in job_ids:
                if self._store is None:
                    self._store = open_store(self.settings)
                dropped = parts.discard(s, self._store, job_id)
                log.info("job %s ended: %d intermediate objects removed", job_id, dropped)
            s.commit()

    def _grace_over(self, s: Session, job: Job) -> bool:
        """A runner gets a grace period to stop at an item boundary and save what it has."""
        asked = s.scalars(
            select(JobEvent.created_at).where(JobEvent.job_id == job.id, JobEvent.type == "state")
            .order_by(JobEvent.seq.desc()).limit(1)
        ).first()
        return asked is None or (utcnow() - asked).total_seconds() >= self.settings.dispatch.cancel_grace_s

    def _ray_status(self, ray_job_id: str | None) -> tuple[Any, str | None]:
        if ray_job_id is None:
            return None, "never submitted"
        try:
            info = self.client().get_job_info(ray_job_id)
        except RuntimeError as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                return None, None
            raise
        return info.status, (info.message or "")[-500:] or None

    def _requeue_or_fail(self, s: Session, job: Job, reason: str) -> None:
        if job.attempts < job.max_attempts:
            log.warning("job %s: %s; retrying (attempt %d of %d)", job.id, reason, job.attempts + 1, job.max_attempts)
            transition(s, job, JobState.queued, reason=reason)
        else:
            transition(s, job, JobState.failed, error=f"{reason} (after {job.attempts} attempts)")

    def start_queued(self, gpus: Plan) -> None:
        """Start queued jobs up to ``max_running``; GPU jobs only when ``gpus`` (this tick's plan) admitted them."""
        with self.db.session() as s:
            active = s.scalar(select(func.count()).select_from(Job).where(Job.state.in_([a.value for a in ACTIVE]), Job.kind != RUN_KIND)) or 0
            for job_id in next_jobs(s, self.settings.dispatch.max_running - active, held=gpus.held):
                job = s.scalars(
                    select(Job).where(Job.id == job_id, Job.state == JobState.queued.value).with_for_update(skip_locked=True)
                ).one_or_none()
                if job is None:
                    continue
                if job.id not in gpus.admitted and self.queue_demand().bundles(job.id, job.kind, job.spec):
                    continue  # a GPU job queued after this tick's plan was made: the next plan decides
                job.attempts += 1
                job.ray_job_id = f"{job.id}-{uuid.uuid4().hex[:8]}"
                job.runner_pid = None
                transition(s, job, JobState.running, attempt=job.attempts)
                s.commit()
                if not self._submit(s, job):
                    return

    def runner_env(self) -> dict[str, str]:
        """The runtime env of a runner: public settings and references, never a secret value.

        Anyone holding the Ray dashboard token can read a job's runtime env, so
        secrets (the database URL with its password, the S3 secret key) reach
        the runner from its node: from the file this control plane keeps under
        its home (``runner_secrets = "file"``) or from the node's own environment.
        """
        public, secret = job_env(self.settings)
        if secret:
            public[SECRET_NAMES_ENV] = ",".join(sorted(secret))
            if self.settings.dispatch.runner_secrets == "file":
                path = runner_secrets_path(self.settings)
                if secret != self._secrets_written or not path.is_file():
                    write_secrets_file(path, secret)
                    self._secrets_written = secret
                public[SECRETS_FILE_ENV] = str(path)
        return public

    def python(self) -> str:
        """The interpreter Ray Job entrypoints name (runners and GPU demand requests alike)."""
        return self.settings.dispatch.runner_python or sys.executable

    def _submit(self, s: Session, job: Job) -> bool:
        entrypoint = f"{shlex.quote(self.python())} -m farm.runner {job.id}"
        try:
            self.client().submit_job(
                entrypoint=entrypoint,
                submission_id=job.ray_job_id,
                runtime_env={"env_vars": self.runner_env()},
                metadata={"farm_job_id": job.id, "kind": job.kind, "attempt": str(job.attempts)},
            )
        except Exception as exc:  # Ray unreachable: give the attempt back, try later
            log.warning("could not submit job %s to Ray: %s", job.id, exc)
            job.attempts -= 1
            transition(s, job, JobState.queued, reason=f"Ray did not accept the job: {exc}"[:500])
            s.commit()
            return False
        return True
