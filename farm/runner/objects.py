"""Object bytes for workers: a picklable handle the door hands out, so no worker opens the database.

A worker reads an input as a local file (decoders want a seekable file: a
local store already has one; from S3 the object is downloaded once per node
into the node's bounded cache, `farm.runner.media_cache`) and writes outputs
under server-built keys, hashed as they stream, returning a `StoredFile`
that the driver records as an asset. `FolderObjects` is the same handle
over a plain folder, for benchmarks, tools and tests that run stages
without a farm.
"""

from __future__ import annotations

import io
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from farm.storage.ingest import HashingReader, StoredFile, read_head, store_object
from farm.runner.media_cache import MediaCache
from farm.settings import Settings
from farm.storage import LocalStore, ObjectNotFound, ObjectStore, open_store

__all__ = ["FolderObjects", "ObjectHandle", "StoreObjects", "StoredFile"]


class ObjectHandle(ABC):
    """What a stage may do with objects. Pickled to workers: holds configuration, opens lazily."""

    @abstractmethod
    def local_path(self, object_key: str) -> Path:
        """A local file with the object's bytes; `FileNotFoundError` when there is no such object."""

    @abstractmethod
    def put(self, name: str, data: bytes | Path) -> StoredFile:
        """Store an output called ``name``; hashed while written."""

    @abstractmethod
    def get(self, object_key: str) -> Iterator[bytes]:
        """The object's bytes in chunks."""

    @abstractmethod
    def delete(self, object_key: str) -> None:
        """Drop an object that will not be recorded (a half-done item's outputs); missing is fine."""


def _open(data: bytes | Path) -> io.BufferedIOBase:
    return io.BytesIO(data) if isinstance(data, bytes) else data.open("rb")


class StoreObjects(ObjectHandle):
    """The farm's object store, writing as one project of one organization."""

    def __init__(self, settings: Settings, org_id: str, project_id: str, store: ObjectStore | None = None) -> None:
        self.settings, self.org_id, self.project_id = settings, org_id, project_id
        self._store = store  # the driver's open store; a worker opens its own

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = open_store(self.settings, ride_out_outages=True)
        return self._store

    @property
    def cache(self) -> MediaCache:
        """The media cache of the node this handle is used on (not the driver's: it is resolved where it runs)."""
        return MediaCache.for_node(self.settings)

    @property
    def cache_dir(self) -> Path:
        return self.cache.root

    def local_path(self, object_key: str) -> Path:
        store = self.store
        if isinstance(store, LocalStore):
            path = store._path(object_key)  # the store's own data file: no copy
            if not path.is_file():
                raise FileNotFoundError(object_key)
            return path
        try:
            return self._cached(store, object_key)
        except ObjectNotFound:
            raise FileNotFoundError(object_key) from None

    def _cached(self, store: ObjectStore, key: str) -> Path:
        def fetch(fh: BinaryIO) -> None:
            for chunk in store.get(key):
                fh.write(chunk)

        return self.cache.path(key, fetch)

    def put(self, name: str, data: bytes | Path) -> StoredFile:
        with _open(data) as fh:
            return store_object(self.store, self.org_id, self.project_id, name, fh)

    def get(self, object_key: str) -> Iterator[bytes]:
        return self.store.get(object_key)

    def delete(self, object_key: str) -> None:
        self.store.delete(object_key)


class FolderObjects(ObjectHandle):
    """Plain files under one folder: keys are relative paths, outputs keep their names."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def local_path(self, object_key: str) -> Path:
        path = self.root / object_key
        if not path.is_file():
            raise FileNotFoundError(object_key)
        return path

    def put(self, name: str, data: bytes | Path) -> StoredFile:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with _open(data) as fh, path.open("wb") as out:
            head, content_type = read_head(fh)
            reader = HashingReader(head, fh)
            shutil.copyfileobj(reader, out)  # type: ignore[misc]
        return StoredFile(name, reader.size, reader.sha256.hexdigest(), content_type, path=str(path))

    def get(self, object_key: str) -> Iterator[bytes]:
        with self.local_path(object_key).open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    def delete(self, object_key: str) -> None:
        (self.root / object_key).unlink(missing_ok=True)
