"""The node-local media cache: objects of a remote store kept as local files, bounded, least recently used out first.

Decoders want seekable local files, so a worker downloads an input once per
node and every worker on that node reuses the copy. The cache belongs to the
node: it lives where the node's own ``FARM_STORAGE__CACHE_DIR`` says (else
the job's setting, else ``$FARM_HOME/cache/media``) and holds at most
``cache_max_bytes``; after each download the least recently used files go
until it fits.

Concurrent readers are safe: one download per key at a time (a per-key
lock), one eviction at a time (a cache-wide lock), and an entry is never
evicted while it is being downloaded or within ``in_use_s`` of its last use
(the window between handing out a path and opening it). A reader that has
the file open keeps its bytes even if the entry goes: eviction unlinks.
When every entry is in use the cache stays over its cap until one is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from farm.settings import Settings

log = logging.getLogger("farm.media_cache")
CACHE_DIR_ENV = "FARM_STORAGE__CACHE_DIR"  # a node's own setting wins over the one its job carries
SUFFIXES = (".lock", ".part")


@dataclass(frozen=True)
class MediaCache:
    root: Path
    max_bytes: int
    in_use_s: float = 60.0

    @classmethod
    def for_node(cls, settings: Settings) -> MediaCache:
        """The cache of the node this process runs on."""
        root = os.environ.get(CACHE_DIR_ENV) or settings.storage.cache_dir or settings.home / "cache" / "media"
        return cls(Path(root), settings.storage.cache_max_bytes)

    def path(self, key: str, fetch: Callable[[BinaryIO], None]) -> Path:
        """A local file with ``key``'s bytes: the cached copy (marked used), or ``fetch`` writes one."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / hashlib.sha256(key.encode()).hexdigest()
        if self._touch(path):
            return path
        with _locked(path.with_suffix(".lock"), fcntl.LOCK_EX):  # other workers on this node wait for one download
            if self._touch(path):
                return path
            tmp = path.with_suffix(f".{os.getpid()}.part")
            try:
                with open(tmp, "wb") as fh:
                    fetch(fh)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        self.evict(keep=path)
        return path

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of every cached file, least recently used first."""
        found = []
        with os.scandir(self.root) as it:
            for e in it:
                if e.name.endswith(SUFFIXES):
                    continue
                with contextlib.suppress(FileNotFoundError):  # evicted by another process meanwhile
                    st = e.stat()
                    found.append((Path(e.path), st.st_size, st.st_mtime))
        return sorted(found, key=lambda x: x[2])

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used entries until the cache fits its cap; returns the bytes freed."""
        with _locked(self.root / ".evict.lock", fcntl.LOCK_EX):
            entries = self.entries()
            over = sum(size for _, size, _ in entries) - self.max_bytes
            freed, now = 0, time.time()
            for path, size, used in entries:
                if freed >= over:
                    break
                if path == keep or now - used < self.in_use_s:
                    continue
                lock = path.with_suffix(".lock")
                with _locked(lock, fcntl.LOCK_EX | fcntl.LOCK_NB) as held:
                    if held and self._last_use(path) == used:  # not being downloaded, not used since we looked
                        path.unlink(missing_ok=True)
                        lock.unlink(missing_ok=True)  # a waiter on the old lock just downloads again
                        freed += size
            if freed < over:
                log.info("media cache %s stays %d bytes over its cap: every other entry is in use", self.root, over - freed)
            return freed

    @staticmethod
    def _last_use(path: Path) -> float | None:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return None

    @staticmethod
    def _touch(path: Path) -> bool:
        """Mark ``path`` used now; False if it is not there."""
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True


@contextlib.contextmanager
def _locked(path: Path, how: int) -> Iterator[bool]:
    """An flock on ``path``; yields False when a non-blocking lock is taken by someone else."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, how)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
