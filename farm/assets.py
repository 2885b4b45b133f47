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

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True)
class StoredFile:
    """Bytes written and hashed, not yet an asset: the store's key, or a plain file's path."""

    name: str
    size: int
    sha256: str
    content_type: str
    asset_id: str | None = None
    object_key: str | None = None
    path: str | None = None


def _seekable(source: object) -> bool:
    seekable = getattr(source, "seekable", None)
    return bool(seekable()) if callable(seekable) else False


class HashingReader:
    """Wraps a source for whoever writes it: hashes, counts and enforces the size limit."""

    def __init__(self, head: bytes, source: Readable, limit: int | None = None) -> None:
        self._head = self._first = head
        self._source = source
        self._after_head = source.tell() if _seekable(source) else None  # type: ignore[attr-defined]
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()

    def seekable(self) -> bool:
        """Whether the store may send it again from the start (a file or bytes can be; a request body cannot)."""
        return self._after_head is not None

    def tell(self) -> int:
        return self.size

    def seek(self, offset: int, whence: int = 0, /) -> int:
        """Only back to the start, as a store retrying a failed upload needs."""
        if (offset, whence) != (0, 0) or self._after_head is None:
            raise OSError("a HashingReader can only seek back to its start, over a seekable source")
        self._source.seek(self._after_head)  # type: ignore[attr-defined]
        self._head, self.size, self.sha256 = self._first, 0, hashlib.sha256()
        return 0

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            chunk, self._head = (self._head, b"") if n < 0 or n >= len(self._head) else (self._head[:n], self._head[n:])
        else:
            chunk = self._source.read(n)
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self.sha256.update(chunk)
        return chunk


def read_head(source: Readable) -> tuple[bytes, str]:
    """The first bytes of ``source`` and the content type they show; empty sources are refused."""
    head = b""
    while len(head) < SNIFF_BYTES:
        chunk = source.read(SNIFF_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise EmptyUpload("the uploaded file is empty")
    return head, sniff(head)


def store_object(store: ObjectStore, org_id: str, project_id: str, name: str, source: Readable, *,
                 limit: int | None = None) -> StoredFile:
    """Stream ``source`` to a fresh server-built key of the project; no database involved."""
    head, content_type = read_head(source)
    asset_id = new_id("asset")
    key = object_key(org_id, project_id, asset_id)
    reader = HashingReader(head, source, limit)
    try:
        store.put(key, reader, length=None, content_type=content_type)
    except BaseException:
        store.delete(key)
        raise
    return StoredFile(name, reader.size, reader.sha256.hexdigest(), content_type, asset_id=asset_id, object_key=key)


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
