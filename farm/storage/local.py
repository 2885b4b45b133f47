"""Objects as files under one directory: the embedded default.

Layout under ``root``: ``data/<key>`` holds the bytes, ``meta/<key>.json``
the content type and etag, ``tmp/`` the half-written uploads. Keeping the
three apart means no key can collide with a sidecar or a temp file, and a
crash never leaves a partial object visible under ``data/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

from farm.storage import signing
from farm.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    validate_expiry,
    validate_key,
    validate_range,
)

COPY_CHUNK = 1 << 20
DEFAULT_TYPE = "application/octet-stream"


class LocalStore(ObjectStore):
    """A directory that behaves like a bucket; presigned URLs point at the control plane."""

    def __init__(self, root: Path, signing_key: bytes, base_url: str) -> None:
        if len(signing_key) < 16:
            raise ValueError("signing key must be at least 16 bytes")
        self.root = Path(root).absolute()
        self._data = self.root / "data"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"
        self._secret = signing_key
        self.base_url = base_url.rstrip("/")

    # -- paths ---------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """Data file for ``key``; refuses anything that would land outside ``data/``."""
        validate_key(key)
        path = self._data / key
        if not path.resolve().is_relative_to(self._data.resolve()):
            raise ValueError(f"object key escapes the store root: {key!r}")
        return path

    def _meta_path(self, key: str) -> Path:
        return self._meta / f"{key}.json"

    # -- lifecycle -----------------------------------------------------------

    def ensure_ready(self) -> None:
        for d in (self._data, self._meta, self._tmp):
            d.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        for d in (self._data, self._meta, self._tmp):
            if not d.is_dir() or not os.access(d, os.W_OK | os.X_OK):
                raise StorageError(f"local store directory missing or not writable: {d}")

    # -- objects -------------------------------------------------------------

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        length: int | None = None,
        content_type: str = DEFAULT_TYPE,
    ) -> ObjectInfo:
        path = self._path(key)
        if length is not None and length < 0:
            raise ValueError("length must be non-negative")
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        except FileNotFoundError as exc:
            raise StorageError(f"local store not ready: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                while length is None or size < length:
                    want = COPY_CHUNK if length is None else min(COPY_CHUNK, length - size)
                    chunk = data.read(want)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if length is not None and size != length:
                raise StorageError(f"stream ended after {size} of {length} bytes")
            os.chmod(tmp, 0o644)
            meta = {"content_type": content_type, "etag": digest.hexdigest(), "ino": os.stat(tmp).st_ino}
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)  # same filesystem, so the inode recorded above survives
            self._write_meta(key, meta)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.stat(key)

    def _write_meta(self, key: str, meta: dict[str, object]) -> None:
        target = self._meta_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="meta-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(meta, f)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _read_meta(self, key: str, path: Path, ino: int) -> tuple[str, str]:
        """(content_type, etag); recomputes the etag if a crash lost or staled the sidecar.

        The sidecar names the inode it describes, so one left over from an
        earlier version of the object is recognised as stale.
        """
        try:
            meta = json.loads(self._meta_path(key).read_text())
            if meta.get("ino") == ino:
                return str(meta["content_type"]), str(meta["etag"])
        except (OSError, ValueError, KeyError):
            pass
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(COPY_CHUNK):
                digest.update(chunk)
        return DEFAULT_TYPE, digest.hexdigest()

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        if not path.is_file():
            raise ObjectNotFound(key)  # a "directory" made by deeper keys is not an object
        content_type, etag = self._read_meta(key, path, st.st_ino)
        modified = datetime.fromtimestamp(st.st_mtime, tz=UTC)
        return ObjectInfo(key=key, size=st.st_size, etag=etag, content_type=content_type, last_modified=modified)

    def get(
        self, key: str, *, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        validate_range(offset, length)
        path = self._path(key)
        try:
            f = open(path, "rb")  # opened now so a missing key fails before iteration
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        f.seek(offset)
        return _read_range(f, length, chunk_size)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            self._meta_path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            pass  # only deeper keys live here; there is no object to delete
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    # -- presigned URLs ------------------------------------------------------

    def _url(self, key: str, method: str, expires: timedelta, download_name: str | None) -> str:
        validate_key(key)
        expires_at = int(time.time() + validate_expiry(expires).total_seconds())
        sig = signing.sign(self._secret, key, method, expires_at, download_name=download_name)
        query = {"method": method, "expires": expires_at, "signature": sig}
        if download_name is not None:
            query["filename"] = download_name
        return f"{self.base_url}/v1/objects/{quote(key)}?{urlencode(query)}"

    def presigned_get_url(self, key: str, expires: timedelta, *, download_name: str | None = None) -> str:
        return self._url(key, "GET", expires, download_name)

    def presigned_put_url(self, key: str, expires: timedelta) -> str:
        return self._url(key, "PUT", expires, None)

    def verify_presigned(
        self, key: str, method: str, expires: int | str, signature: str, *, download_name: str | None = None
    ) -> bool:
        """What the ``/v1/objects/{key}`` route asks: is this URL genuine and unexpired?

        ``download_name`` is the URL's ``filename`` parameter; it is signed too.
        """
        try:
            validate_key(key)
            expires_at = int(expires)
        except (TypeError, ValueError):
            return False
        return signing.verify(self._secret, key, method, expires_at, signature, download_name=download_name)


def _read_range(f: BinaryIO, length: int | None, chunk_size: int) -> Iterator[bytes]:
    with f:
        remaining = length
        while remaining is None or remaining > 0:
            chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
