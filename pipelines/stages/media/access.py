"""Where a worker reads a video from: a local file, never bytes shipped through the driver.

Decoders want a seekable file. A local object store already has one; for S3
the worker downloads the object once into a node-local cache (streamed to
disk, one download per node even with many workers asking at once).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from farm.settings import Settings
from farm.storage import LocalStore, ObjectNotFound, ObjectStore, open_store
from pipelines.stages.base import MediaError
from pipelines.stages.payloads import Source


class MediaAccess:
    """Opens the farm's object store lazily in a worker; resolves a `Source` to a local path."""

    def __init__(self, settings: Settings | None) -> None:
        self.settings = settings
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            if self.settings is None:
                raise RuntimeError("this stage was built without farm settings; it can only read local files")
            self._store = open_store(self.settings)
        return self._store

    @property
    def cache_dir(self) -> Path:
        assert self.settings is not None
        return self.settings.home / "cache" / "media"

    def path(self, source: Source) -> Path:
        if source.path is not None:
            path = Path(source.path)
            if not path.is_file():
                raise MediaError(f"file not found: {path}")
            return path
        if source.object_key is None:
            raise ValueError(f"source {source.name} has neither a path nor an object key")
        store = self.store
        try:
            if isinstance(store, LocalStore):
                path = store._path(source.object_key)  # the store's own data file: no copy
                if not path.is_file():
                    raise ObjectNotFound(source.object_key)
                return path
            return self._cached(store, source.object_key)
        except ObjectNotFound:
            raise MediaError("the asset's bytes are missing from the object store") from None

    def _cached(self, store: ObjectStore, key: str) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / hashlib.sha256(key.encode()).hexdigest()
        if path.is_file():
            return path
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # other workers on this node wait for one download
            if not path.is_file():
                tmp = path.with_suffix(f".{os.getpid()}.part")
                with open(tmp, "wb") as fh:
                    for chunk in store.get(key):
                        fh.write(chunk)
                tmp.replace(path)
        return path
