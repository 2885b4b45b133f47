"""Objects in an S3-protocol bucket (MinIO, AWS S3, R2 …) through the MinIO SDK."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from farm.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    content_disposition,
    validate_expiry,
    validate_key,
    validate_range,
)

log = logging.getLogger("farm.storage")
T = TypeVar("T")

MIN_PART_SIZE = 5 * 1024**2  # S3 rejects smaller multipart parts (all but the last)
MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}
NETWORK_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)


def _pool(timeout: urllib3.Timeout, retries: urllib3.Retry | bool) -> urllib3.PoolManager:
    """Our own pool so timeouts are bounded (minio's default waits 5 minutes)."""
    return urllib3.PoolManager(
        timeout=timeout,
        retries=retries,
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


@contextmanager
def _errors(key: str | None, *, missing_is_not_found: bool = True) -> Iterator[None]:
    """Translate SDK and network failures into the two errors callers handle."""
    try:
        yield
    except S3Error as exc:
        if missing_is_not_found and key is not None and exc.code in MISSING:
            raise ObjectNotFound(key) from None
        raise StorageError(f"S3 {exc.code}: {exc.message}") from exc
    except NETWORK_ERRORS as exc:
        raise StorageError(f"S3 unreachable or failed: {exc}") from exc


class S3Store(ObjectStore):
    """One bucket; uploads of unknown size go multipart, one ``part_size`` buffer at a time.

    Memory per upload is about ``(parallel_uploads + 1) * part_size``.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str | None = None,
        secure: bool = False,
        part_size: int = 16 * 1024**2,
        *,
        parallel_uploads: int = 1,
        outage_s: float = 0,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.part_size = part_size
        self.parallel_uploads = max(1, parallel_uploads)
        retries = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
        creds = {"access_key": access_key, "secret_key": secret_key, "secure": secure, "region": region}
        self._client = Minio(endpoint, **creds, http_client=_pool(urllib3.Timeout(connect=2, read=30), retries))
        # /readyz must answer in a couple of seconds even when the endpoint is a black hole.
        self._probe = Minio(endpoint, **creds, http_client=_pool(urllib3.Timeout(connect=1, read=2), False))
        self.region = region
        self.endpoint, self.outage_s = endpoint, outage_s

    def _call(self, key: str | None, op: Callable[[], T], *, missing_is_not_found: bool = True,
              rewind: Callable[[], None] | None = None) -> T:
        """``op`` with errors translated; an unreachable store is retried for ``outage_s`` (``rewind`` before each retry)."""
        deadline = time.monotonic() + self.outage_s
        delay = 0.2
        while True:
            try:
                with _errors(key, missing_is_not_found=missing_is_not_found):
                    return op()
            except StorageError as exc:
                cause = exc.__cause__
                if not isinstance(cause, NETWORK_ERRORS) or isinstance(cause, S3Error) or self.outage_s <= 0:
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageError(f"object store s3://{self.bucket} at {self.endpoint} unreachable for "
                                       f"{self.outage_s:.0f} s: {cause}") from cause
                log.warning("object store at %s unreachable, retrying in %.1f s: %s", self.endpoint, delay, cause)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                if rewind is not None:
                    rewind()

    def ensure_ready(self) -> None:
        with _errors(None):
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket, location=self.region)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def check(self) -> None:
        with _errors(None):
            exists = self._probe.bucket_exists(self.bucket)
        if not exists:
            raise StorageError(f"bucket {self.bucket!r} does not exist")

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        length: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        validate_key(key)
        if length is not None and length < 0:
            raise ValueError("length must be non-negative")
        start = data.tell() if getattr(data, "seekable", lambda: False)() else None

        def put() -> None:
            self._client.put_object(
                self.bucket,
                key,
                data if length is not None else _FullReads(data),
                length=-1 if length is None else length,
                content_type=content_type,
                part_size=self.part_size,
                num_parallel_uploads=self.parallel_uploads,
            )

        if start is None:  # a stream read once cannot be sent again
            with _errors(key, missing_is_not_found=False):
                put()
        else:
            self._call(key, put, missing_is_not_found=False, rewind=lambda: data.seek(start))
        return self.stat(key)

    def get(
        self, key: str, *, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        validate_key(key)
        validate_range(offset, length)
        if length == 0:  # minio reads length=0 as "to the end"
            self.stat(key)
            return iter(())
        try:
            response = self._call(key, lambda: self._client.get_object(self.bucket, key, offset=offset, length=length or 0))
        except StorageError as exc:
            if isinstance(exc.__cause__, S3Error) and exc.__cause__.code == "InvalidRange":
                return iter(())  # offset at or past the end: nothing to read
            raise
        return _stream(response, key, chunk_size)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = self._call(key, lambda: self._client.stat_object(self.bucket, key))
        return ObjectInfo(
            key=key,
            size=int(obj.size or 0),
            etag=obj.etag or "",
            content_type=obj.content_type or "application/octet-stream",
            last_modified=obj.last_modified or datetime.now(UTC),
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self._call(key, lambda: self._client.remove_object(self.bucket, key))
        except ObjectNotFound:
            pass

    def presigned_get_url(self, key: str, expires: timedelta, *, download_name: str | None = None) -> str:
        validate_key(key)
        headers = None
        if download_name is not None:
            headers = {"response-content-disposition": content_disposition(download_name)}
        with _errors(key):
            return self._client.presigned_get_object(
                self.bucket, key, expires=validate_expiry(expires), response_headers=headers
            )

    def presigned_put_url(self, key: str, expires: timedelta) -> str:
        validate_key(key)
        with _errors(key):
            return self._client.presigned_put_object(self.bucket, key, expires=validate_expiry(expires))


def _stream(response: urllib3.BaseHTTPResponse, key: str, chunk_size: int) -> Iterator[bytes]:
    """Yield the body and always hand the connection back, even if the caller stops early."""
    try:
        with _errors(key):
            yield from response.stream(chunk_size, decode_content=False)  # stored bytes, verbatim
    finally:
        response.close()
        response.release_conn()


class _FullReads:
    """Answers read(n) with n bytes (fewer only at EOF).

    minio builds each part with ``part_data += stream.read(...)``; a source that
    returns small chunks turns that into quadratic copying and twice the part in
    memory. Joining once per part keeps upload memory near two parts.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return self._source.read()
        chunks: list[bytes] = []
        got = 0
        while got < n:
            chunk = self._source.read(n - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
