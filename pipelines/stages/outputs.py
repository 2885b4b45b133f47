"""Outputs made on workers: bytes go straight to the object store, the driver records the asset.

A worker streams a clip or an image into the store under a server-built key
(hashing as it goes) and returns a `StoredFile`; only the driver writes
database rows, so SQLite works as well as PostgreSQL and no clip passes
through the driver. Registration deduplicates by SHA-256 within the
project, as uploads do, so a rerun reuses the assets it already made.
Without a project (benchmarks, tools) outputs are plain files in a folder.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.assets import object_key
from farm.db import Asset, Database, Job, Role
from farm.ids import new_id
from farm.settings import Settings
from farm.sniff import SNIFF_BYTES, kind_of, sniff
from farm.storage import ObjectStore, open_store
from pipelines.stages.payloads import ShotTask, StoredFile


class _Hashing:
    """Counts and hashes what the store reads through it."""

    def __init__(self, source: BinaryIO) -> None:
        self.source, self.size, self.sha256 = source, 0, hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        chunk = self.source.read(n)
        self.size += len(chunk)
        self.sha256.update(chunk)
        return chunk


class OutputWriter:
    """Puts a worker's outputs where the task says: the project's store, or a local folder."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            assert self.settings is not None, "outputs to a project need the farm's settings"
            self._store = open_store(self.settings)
        return self._store

    def put(self, task: ShotTask, name: str, data: bytes | Path) -> StoredFile:
        with (io.BytesIO(data) if isinstance(data, bytes) else data.open("rb")) as fh:
            head = fh.read(SNIFF_BYTES)
            fh.seek(0)
            ctype = sniff(head)
            if task.org_id is None or task.project_id is None:
                return self._local(task, name, fh, ctype)
            asset_id = new_id("asset")
            key = object_key(task.org_id, task.project_id, asset_id)
            reader = _Hashing(fh)
            try:
                self.store.put(key, reader, length=None, content_type=ctype)  # type: ignore[arg-type]
            except BaseException:
                self.store.delete(key)
                raise
        return StoredFile(name, reader.size, reader.sha256.hexdigest(), ctype, asset_id=asset_id, object_key=key)

    @staticmethod
    def _local(task: ShotTask, name: str, fh: BinaryIO, ctype: str) -> StoredFile:
        assert task.out_dir is not None, "a task without a project needs out_dir"
        path = Path(task.out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = _Hashing(fh)
        with path.open("wb") as out:
            shutil.copyfileobj(reader, out)  # type: ignore[misc]
        return StoredFile(name, reader.size, reader.sha256.hexdigest(), ctype, path=str(path))


def register(db: Database, store: ObjectStore, job_id: str, stored: StoredFile) -> str:
    """Record a worker's stored object as an asset of the job's project; returns the asset id."""
    assert stored.asset_id is not None and stored.object_key is not None
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        existing = _same_bytes(s, job.project_id, stored.sha256)
        if existing is None:
            actor = Principal(key_id=job.submitted_by or "", org_id=job.org_id, role=Role.member)
            s.add(Asset(
                id=stored.asset_id, org_id=job.org_id, project_id=job.project_id, name=stored.name,
                kind=kind_of(stored.content_type), content_type=stored.content_type, size=stored.size,
                sha256=stored.sha256, object_key=stored.object_key, created_by=job.submitted_by,
            ))
            audit.record(s, actor, "asset.create", "asset", stored.asset_id, name=stored.name, size=stored.size, job_id=job_id)
            try:
                s.commit()
                return stored.asset_id
            except IntegrityError:  # the same bytes registered concurrently
                s.rollback()
                existing = _same_bytes(s, job.project_id, stored.sha256)
                if existing is None:
                    raise
    store.delete(stored.object_key)
    return existing


def _same_bytes(session: Session, project_id: str, sha256: str) -> str | None:
    return session.scalars(select(Asset.id).where(Asset.project_id == project_id, Asset.sha256 == sha256)).one_or_none()
