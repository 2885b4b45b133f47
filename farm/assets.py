"""Asset ingest: stream bytes into the object store while hashing them, then record the asset.

One path for every asset, whoever writes it: an API upload, a job's output
saved by the runner, a clip a worker rendered. The bytes pass through once:
sniffed from the first few KiB, hashed and counted as they stream to the
store (`store_object`, safe in a worker), never held whole in memory. The
asset row is written where the database is (`register`): bytes whose
SHA-256 already exists in the project are deduplicated, the new object
dropped and the existing asset returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.db.models import Asset, Project
from farm.sniff import kind_of
from farm.storage import ObjectStore
from farm.storage.ingest import (  # re-exported: where an upload's callers have always found them
    EmptyUpload, HashingReader, Readable, StoredFile, UploadTooLarge, object_key, read_head, store_object,
)

__all__ = ["EmptyUpload", "HashingReader", "IngestResult", "Readable", "StoredFile", "UploadTooLarge", "delete", "ingest",
           "object_key", "read_head", "register", "store_object"]


@dataclass(frozen=True)
class IngestResult:
    asset: Asset
    created: bool


def register(session: Session, store: ObjectStore, principal: Principal, project: Project, stored: StoredFile,
             **audit_data: Any) -> IngestResult:
    """Record a stored object as an asset of ``project``, or drop it for the asset with the same bytes."""
    assert stored.asset_id is not None and stored.object_key is not None, "only objects in the store become assets"
    existing = _find(session, project.id, stored.sha256)
    if existing is not None:
        store.delete(stored.object_key)
        return IngestResult(existing, created=False)
    asset = Asset(
        id=stored.asset_id,
        org_id=project.org_id,
        project_id=project.id,
        name=stored.name,
        kind=kind_of(stored.content_type),
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        object_key=stored.object_key,
        created_by=principal.key_id or None,
    )
    session.add(asset)
    audit.record(session, principal, "asset.create", "asset", asset.id, name=stored.name, size=stored.size, **audit_data)
    try:
        session.commit()
    except IntegrityError:  # a concurrent identical upload won the race
        session.rollback()
        store.delete(stored.object_key)
        winner = _find(session, project.id, stored.sha256)
        if winner is None:
            raise
        return IngestResult(winner, created=False)
    return IngestResult(asset, created=True)


def ingest(
    session: Session,
    store: ObjectStore,
    principal: Principal,
    project: Project,
    name: str,
    source: Readable,
    *,
    limit: int,
    **audit_data: Any,
) -> IngestResult:
    """Store one upload as an asset of ``project`` (runs in a worker thread)."""
    stored = store_object(store, project.org_id, project.id, name, source, limit=limit)
    return register(session, store, principal, project, stored, **audit_data)


def _find(session: Session, project_id: str, digest: str) -> Asset | None:
    return session.scalars(
        select(Asset).where(Asset.project_id == project_id, Asset.sha256 == digest)
    ).one_or_none()


def delete(session: Session, store: ObjectStore, principal: Principal, asset: Asset) -> None:
    session.delete(asset)
    audit.record(session, principal, "asset.delete", "asset", asset.id, name=asset.name)
    session.commit()
    store.delete(asset.object_key)
