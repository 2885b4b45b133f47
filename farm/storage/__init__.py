"""Object storage: one ``ObjectStore`` interface, a local directory or an S3 bucket behind it.

>>> store = open_store(get_settings()); store.ensure_ready()
"""

from __future__ import annotations

from farm.settings import Settings
from farm.storage.base import ObjectInfo, ObjectNotFound, ObjectStore, StorageError, validate_key
from farm.storage.local import LocalStore
from farm.storage.signing import load_signing_key

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "load_signing_key",
    "open_store",
    "validate_key",
]


def __getattr__(name: str) -> object:
    """S3Store loads the MinIO SDK: only when asked for (the runner starts faster without it)."""
    if name == "S3Store":
        from farm.storage.s3 import S3Store

        return S3Store
    raise AttributeError(name)


def open_store(settings: Settings, *, ride_out_outages: bool = False) -> ObjectStore:
    """Build the configured backend; touches nothing remote (call ``ensure_ready`` at startup).

    ``ride_out_outages``: a remote store that cannot be reached is retried for
    ``s3.outage_s`` before an operation fails (runners and their workers, whose
    items would otherwise fail on a restart of the store). The API answers at
    once instead.
    """
    if settings.storage.backend == "local":
        return LocalStore(settings.storage.local_root, load_signing_key(settings.home), settings.base_url)
    if settings.storage.backend == "s3":
        from farm.storage.s3 import S3Store

        s3 = settings.s3
        return S3Store(
            s3.endpoint,
            s3.access_key,
            s3.secret_key.get_secret_value(),
            s3.bucket,
            region=s3.region,
            secure=s3.secure,
            part_size=s3.part_size,
            outage_s=s3.outage_s if ride_out_outages else 0,
        )
    raise ValueError(f"unknown storage backend {settings.storage.backend!r}")
