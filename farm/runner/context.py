"""What a pipeline sees of the farm while it runs: its spec, inputs, items, progress and outputs.

The only way a pipeline touches the control plane's state. Progress and
results flow back through the database and the object store, never through
the API process. Item outcomes are buffered and written in batches; items
finished by an earlier attempt are reported so they are skipped, which makes
a retried runner resume instead of starting over. Workers write object bytes
through `objects`; the driver records them here as assets and typed outputs.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from sqlalchemy import select

from farm import assets
from farm.accounts import Principal
from farm.db import Asset, Database, Job, Project, Role
from farm.jobs import outputs, parts
from farm.jobs.service import add_event, record_items, recorded_items
from farm.jobs.states import JobState
from farm.runner.batch import BatchBook
from farm.runner.connect import connect_ray
from farm.runner.objects import StoredFile, StoreObjects
from farm.settings import Settings
from farm.storage import ObjectStore
from kinds import JobSpec, get_kind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from serve.registry import ModelRegistry

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a pipeline when the user asked the job to stop."""


@dataclass(frozen=True)
class InputAsset:
    """One input of the job, resolved for its organization: item ``index`` reads ``object_key``."""

    index: int
    id: str
    name: str
    kind: str
    content_type: str
    size: int
    object_key: str


@dataclass(frozen=True)
class PartRecord:
    """A finished piece of an item (see `farm.jobs.parts`): who made it, its object, what assembly needs of it."""

    part: str
    attempt: int
    worker: str | None
    object_key: str | None
    data: dict[str, Any]


class JobContext:
    """One attempt of one job, as its pipeline sees it."""

    def __init__(self, job: Job, spec: JobSpec, *, settings: Settings, db: Database, store: ObjectStore,
                 flush_every_s: float = 0.5) -> None:
        self.job_id, self.spec, self.attempt = job.id, spec, job.attempts
        self.org_id, self.project_id = job.org_id, job.project_id
        self._submitted_by, self._created_at = job.submitted_by, job.created_at
        self._settings, self._db, self._store = settings, db, store
        self.flush_every_s = flush_every_s
        self._pending: list[tuple[int, bool, str | None]] = []
        self._last_flush = 0.0
        self._last_cancel_check = 0.0
        self._cancel = False

    # -- what pipelines and their workers are handed ----------------------------------------

    @cached_property
    def objects(self) -> StoreObjects:
        """The picklable handle workers read inputs and write outputs through (the job's project)."""
        return StoreObjects(self._settings, self.org_id, self.project_id, self._store)

    @cached_property
    def models(self) -> ModelRegistry:
        """The farm's model registry: the same one Serve's config is built from."""
        from serve.demo import load_registry

        return load_registry(self._settings.models.registry_file, self._settings.models.cache_dir)

    @property
    def base_url(self) -> str:
        """Where clients reach the farm's API (for URLs in output lines)."""
        return self._settings.base_url

    @property
    def media_cache_dir(self) -> Path:
        """Where this node keeps local copies of objects from a remote store."""
        return self.objects.cache_dir

    @cached_property
    def batch(self) -> BatchBook:
        """The batch row of a `batch.*` job."""
        return BatchBook(self, self._db, self._store)

    def transaction(self, work: Callable[[Session], T]) -> T:
        """One unit of work on the database that waits out a database restart (`Database.transaction`)."""
        return self._db.transaction(work, wait_s=self._settings.db.outage_s)

    def connect_ray(self) -> None:
        connect_ray(self._settings.ray.address)

    # -- inputs --------------------------------------------------------------------------------

    def resolve_inputs(self, asset_ids: list[str] | None, project_id: str | None, *, kind: str | None = "video",
                       exclude: Callable[[str], bool] | None = None) -> tuple[list[InputAsset], list[tuple[int, str]]]:
        """The job's inputs, by id or every ``kind`` asset of a project made before the job; the rest fail as items.

        An asset or project of another organization reads exactly like a
        missing one: its bytes are never touched and its existence is not
        revealed. ``exclude`` drops project assets by name (a kind's own outputs).
        """
        def read(s: Session) -> tuple[list[InputAsset], list[tuple[int, str]]]:
            found: list[InputAsset] = []
            rejected: list[tuple[int, str]] = []
            if project_id is not None:
                project = s.get(Project, project_id)
                if project is None or project.org_id != self.org_id:
                    return [], [(0, f"project {project_id} not found")]
                query = select(Asset).where(Asset.project_id == project.id, Asset.created_at <= self._created_at)
                if kind is not None:
                    query = query.where(Asset.kind == kind)
                rows = s.scalars(query.order_by(Asset.created_at, Asset.id)).all()
                candidates: list[tuple[str, Asset | None]] = [(a.id, a) for a in rows if exclude is None or not exclude(a.name)]
            else:
                candidates = [(asset_id, s.get(Asset, asset_id)) for asset_id in asset_ids or []]
            for index, (asset_id, asset) in enumerate(candidates):
                if asset is None or asset.org_id != self.org_id:
                    rejected.append((index, f"asset {asset_id} not found"))
                elif kind is not None and asset.kind != kind:
                    article = "an" if kind[0] in "aeiou" else "a"
                    rejected.append((index, f"asset {asset_id} ({asset.name}) is not {article} {kind}: its content is {asset.content_type}"))
                else:
                    found.append(InputAsset(index, asset.id, asset.name, asset.kind, asset.content_type, asset.size, asset.object_key))
            return found, rejected

        return self.transaction(read)

    # -- outputs -------------------------------------------------------------------------------

    def record_output(self, item: int | None, output: str, stored: StoredFile) -> str:
        """Record an object a worker stored as an asset filling ``output`` of ``item``; returns the asset id.

        Bytes the project already holds are deduplicated: the worker's object
        is dropped and the existing asset recorded.
        """
        self._check_output(output)

        def record(s: Session) -> str:
            project, actor = self._owner(s)
            asset = assets.register(s, self._store, actor, project, stored, job_id=self.job_id).asset
            return self._record(s, item, output, asset.id)

        return self.transaction(record)

    def save_output(self, item: int | None, output: str, name: str, data: bytes | BinaryIO) -> str:
        """Store bytes made on the driver as an asset filling ``output`` of ``item``; returns the asset id."""
        self._check_output(output)
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        start = source.tell() if source.seekable() else None

        def save(s: Session) -> str:
            if start is not None:
                source.seek(start)  # a retried transaction stores the bytes again from the start
            project, actor = self._owner(s)
            asset = assets.ingest(s, self._store, actor, project, name, source,
                                  limit=self._settings.storage.max_upload_bytes, job_id=self.job_id).asset
            return self._record(s, item, output, asset.id)

        return self.transaction(save)

    def _check_output(self, output: str) -> None:
        """Refuse an output the kind does not declare before any bytes become an asset."""
        try:
            get_kind(self.spec.kind).output(output)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None

    def _owner(self, session: Any) -> tuple[Project, Principal]:
        project = session.get(Project, self.project_id)
        assert project is not None, self.project_id
        return project, Principal(key_id=self._submitted_by or "", org_id=self.org_id, role=Role.member)

    def _record(self, session: Any, item: int | None, output: str, asset_id: str) -> str:
        outputs.record(session, self._job(session), item, output, asset_id)
        session.commit()
        return asset_id

    # -- parts of long items ------------------------------------------------------------------

    def parts(self, item: int) -> dict[str, PartRecord]:
        """The pieces of ``item`` finished by this or an earlier attempt, by part name."""
        return self.transaction(lambda s: {r.part: PartRecord(r.part, r.attempt, r.worker, r.object_key, dict(r.data))
                                   for r in parts.parts_of(s, self.job_id, item)})

    def record_part(self, item: int, part: str, *, stored: StoredFile | None = None, worker: str | None = None,
                    data: dict[str, Any] | None = None) -> PartRecord:
        """Record a finished piece of ``item`` (its object, if any, stays until `release_parts`)."""
        def record(s: Session) -> PartRecord:
            row = parts.record(s, self.job_id, item, part, attempt=self.attempt, worker=worker,
                               object_key=stored.object_key if stored else None, data=data)
            s.commit()
            return PartRecord(row.part, row.attempt, row.worker, row.object_key, dict(row.data))

        return self.transaction(record)

    def release_parts(self, item: int, *, forget: bool = False) -> int:
        """Drop ``item``'s intermediate objects once it is assembled (``forget``: the records too, for a failed item)."""
        def release(s: Session) -> int:
            dropped = parts.release(s, self._store, self.job_id, item, forget=forget)
            s.commit()
            return dropped

        return self.transaction(release)

    # -- items, progress, events, cancel ---------------------------------------------------

    def _job(self, session: Any) -> Job:
        job = session.get(Job, self.job_id)
        assert job is not None, self.job_id
        return job

    def done_items(self) -> set[int]:
        """Items an earlier attempt already finished (succeeded or failed)."""
        return self.transaction(lambda s: recorded_items(s, self.job_id))

    def set_total(self, total: int) -> None:
        def write(s: Session) -> None:
            job = self._job(s)
            job.total = total
            add_event(s, job.id, "progress", total=total, succeeded=job.succeeded, failed=job.failed)
            s.commit()

        self.transaction(write)

    def item(self, index: int, ok: bool, error: str | None = None) -> None:
        self._pending.append((index, ok, error[:2000] if error else None))
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self, **progress: Any) -> None:
        outcomes, self._pending = self._pending, []
        self._last_flush = time.monotonic()

        def write(s: Session) -> None:
            job = self._job(s)
            record_items(s, job, outcomes, self.attempt)
            add_event(s, job.id, "progress", total=job.total, succeeded=job.succeeded, failed=job.failed, **progress)
            if job.state == JobState.cancel_requested.value:
                self._cancel = True
            s.commit()

        self.transaction(write)

    def event(self, type: str, **data: Any) -> None:
        def write(s: Session) -> None:
            add_event(s, self.job_id, type, **data)
            s.commit()

        self.transaction(write)

    def check_cancel(self) -> None:
        """Cheap to call often: looks at the database at most twice a second."""
        if not self._cancel and time.monotonic() - self._last_cancel_check >= 0.5:
            self._last_cancel_check = time.monotonic()
            self._cancel = self.transaction(lambda s: self._job(s).state == JobState.cancel_requested.value)
        if self._cancel:
            raise Cancelled()
