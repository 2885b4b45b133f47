"""Asset ingest: stream bytes into the object store while hashing them.

The bytes pass through once: sniffed from the first few KiB, hashed and
counted as they stream to the store, never held whole in memory. An upload
whose SHA-256 already exists in the project is deduplicated: the new object
is dropped and the existing asset returned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.db.models import Asset, Project
from farm.ids import new_id
from farm.sniff import SNIFF_BYTES, kind_of, sniff
from farm.storage import ObjectStore


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


class EmptyUpload(Exception):
    pass


def object_key(org_id: str, project_id: str, asset_id: str) -> str:
    return f"orgs/{org_id}/projects/{project_id}/assets/{asset_id}"


class _HashingReader:
    """Wraps the source for the store: hashes, counts and enforces the size limit."""

    def __init__(self, head: bytes, source: Readable, limit: int) -> None:
        self._head = head
        self._source = source
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            chunk, self._head = (self._head, b"") if n < 0 or n >= len(self._head) else (self._head[:n], self._head[n:])
        else:
            chunk = self._source.read(n)
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self.sha256.update(chunk)
        return chunk


def _read_head(source: Readable) -> bytes:
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = source.read(SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return head


@dataclass(frozen=True)
class IngestResult:
    asset: Asset
    created: bool


def ingest(
    session: Session,
    store: ObjectStore,
    principal: Principal,
    project: Project,
    name: str,
    source: Readable,
    *,
    limit: int,
) -> IngestResult:
    """Store one upload as an asset of ``project`` (runs in a worker thread)."""
    head = _read_head(source)
    if not head:
        raise EmptyUpload("the uploaded file is empty")
    content_type = sniff(head)
    asset_id = new_id("asset")
    key = object_key(project.org_id, project.id, asset_id)
    reader = _HashingReader(head, source, limit)
    try:
        store.put(key, reader, length=None, content_type=content_type)
    except BaseException:
        store.delete(key)
        raise
    digest = reader.sha256.hexdigest()
    existing = _find(session, project.id, digest)
    if existing is not None:
        store.delete(key)
        return IngestResult(existing, created=False)
    asset = Asset(
        id=asset_id,
        org_id=project.org_id,
        project_id=project.id,
        name=name,
        kind=kind_of(content_type),
        content_type=content_type,
        size=reader.size,
        sha256=digest,
        object_key=key,
        created_by=principal.key_id,
    )
    session.add(asset)
    audit.record(session, principal, "asset.create", "asset", asset_id, name=name, size=reader.size)
    try:
        session.commit()
    except IntegrityError:  # a concurrent identical upload won the race
        session.rollback()
        store.delete(key)
        winner = _find(session, project.id, digest)
        if winner is None:
            raise
        return IngestResult(winner, created=False)
    return IngestResult(asset, created=True)


def _find(session: Session, project_id: str, digest: str) -> Asset | None:
    return session.scalars(
        select(Asset).where(Asset.project_id == project_id, Asset.sha256 == digest)
    ).one_or_none()


def delete(session: Session, store: ObjectStore, principal: Principal, asset: Asset) -> None:
    session.delete(asset)
    audit.record(session, principal, "asset.delete", "asset", asset.id, name=asset.name)
    session.commit()
    store.delete(asset.object_key)
