"""Streaming bytes into the object store, hashed and sniffed as they pass: the database-free half of asset ingest.

Workers store their outputs through this module, so a worker process never
imports the database layer (SQLAlchemy and the models cost it most of a
second of start-up); `farm.assets` records what was stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from farm.ids import new_id
from farm.sniff import SNIFF_BYTES, sniff
from farm.storage.base import ObjectStore


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
