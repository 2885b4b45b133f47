"""The ObjectStore contract every backend honours.

Callers (API routes, the job runner) hold an ``ObjectStore`` and never learn which
backend is behind it; the contract tests in ``tests/farm/storage`` run the
same assertions against each implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO
from urllib.parse import quote

MAX_KEY_BYTES = 1024  # S3's limit; enforced everywhere so backends agree.
MAX_PRESIGN = timedelta(days=7)  # S3's limit for SigV4 presigned URLs.


class StorageError(Exception):
    """The store is unreachable or refused the operation (maps to HTTP 503)."""


class ObjectNotFound(KeyError):
    """No object under this key (maps to HTTP 404); a KeyError so ``except KeyError`` works."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:  # KeyError would print the repr
        return f"object not found: {self.key}"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a stat tells about an object; ``last_modified`` is timezone-aware UTC."""

    key: str
    size: int
    etag: str
    content_type: str
    last_modified: datetime


def validate_key(key: str) -> str:
    """Reject keys that could escape a root or alias another key; return it unchanged.

    Keys are server-built, so a bad one is a bug: fail loudly with ValueError.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"object key contains NUL or backslash: {key!r}")
    if key.startswith("/") or key.endswith("/"):
        raise ValueError(f"object key must be relative and name a file: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"object key has an empty, '.' or '..' segment: {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"object key longer than {MAX_KEY_BYTES} bytes")
    return key


def validate_expiry(expires: timedelta) -> timedelta:
    """Presigned URLs live between one second and seven days on every backend."""
    if not timedelta(seconds=1) <= expires <= MAX_PRESIGN:
        raise ValueError(f"presigned URL expiry must be within 1s..7d, got {expires}")
    return expires


def validate_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must be non-negative")


def content_disposition(download_name: str) -> str:
    """``attachment`` header with an ASCII fallback and the RFC 5987 UTF-8 name."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in download_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(download_name, safe='')}"


class ObjectStore(ABC):
    """Bytes under keys: streamed in and out, never whole in memory."""

    @abstractmethod
    def ensure_ready(self) -> None:
        """Create the bucket / root directory if missing (idempotent)."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError unless the store answers; cheap enough for /readyz."""

    @abstractmethod
    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        length: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Store ``data`` (anything with ``.read(n)``); ``length=None`` streams an unknown size."""

    @abstractmethod
    def get(
        self, key: str, *, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Stream a byte range; raises ObjectNotFound at call time, not on first ``next``.

        An offset at or past the end yields nothing.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Describe an object or raise ObjectNotFound."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""

    @abstractmethod
    def presigned_get_url(self, key: str, expires: timedelta, *, download_name: str | None = None) -> str:
        """URL a client downloads from without credentials until ``expires`` passes."""

    @abstractmethod
    def presigned_put_url(self, key: str, expires: timedelta) -> str:
        """URL a client uploads to with a plain PUT until ``expires`` passes."""
