"""The node-local media cache: bounded, least recently used out first, one download per key, safe for readers."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from farm.runner.media_cache import CACHE_DIR_ENV, MediaCache
from farm.runner.objects import StoreObjects
from farm.settings import Settings, StorageSettings


def writer(data: bytes, log: Path | None = None):  # type: ignore[no-untyped-def]
    def fetch(fh: BinaryIO) -> None:
        if log is not None:
            with log.open("a") as f:
                f.write(f"{os.getpid()}\n")
        fh.write(data)

    return fetch


def last_used(path: Path, seconds_ago: float) -> None:
    """Mark an entry as used ``seconds_ago`` (its mtime is its last use)."""
    t = path.stat().st_mtime - seconds_ago
    os.utime(path, (t, t))


def test_the_cache_stays_under_its_cap_evicting_the_least_recently_used(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "media", max_bytes=300, in_use_s=60)
    a, b, c = (cache.path(k, writer(bytes(100))) for k in ("a", "b", "c"))
    for path, ago in ((a, 300), (b, 400), (c, 200)):
        last_used(path, ago)
    assert cache.path("a", writer(b"never fetched")) == a  # a hit: read again, so a is now the most recent
    assert a.read_bytes() == bytes(100)

    d = cache.path("d", writer(bytes(100)))
    assert cache.size() <= 300
    assert not b.exists(), "b was the least recently used"
    assert a.exists() and c.exists() and d.exists()

    last_used(c, 500)
    last_used(d, 100)
    cache.path("e", writer(bytes(150)))  # needs two entries gone: c (oldest), then d; a was just used
    assert cache.size() <= 300 and not c.exists() and not d.exists() and a.exists()


def test_entries_in_use_are_kept_even_over_the_cap(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "media", max_bytes=150, in_use_s=60)
    old = cache.path("old", writer(bytes(100)))
    recent = cache.path("recent", writer(bytes(100)))  # just handed out: a reader may not have opened it yet
    assert old.exists() and recent.exists() and cache.size() == 200  # over the cap until one is not in use

    last_used(old, 120)
    cache.evict()
    assert not old.exists() and recent.exists() and cache.size() == 100


def test_a_reader_with_the_file_open_keeps_reading_after_eviction(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "media", max_bytes=100, in_use_s=0)
    path = cache.path("clip", writer(b"x" * 100))
    with path.open("rb") as reader:
        first = reader.read(10)
        cache.path("next", writer(b"y" * 100))  # evicts clip
        assert not path.exists()
        assert first + reader.read() == b"x" * 100
    again = cache.path("clip", writer(b"x" * 100))  # fetched anew
    assert again.read_bytes() == b"x" * 100


def _read(root: str, log: str, start: Any, out: Any) -> None:
    cache = MediaCache(Path(root), max_bytes=10_000)
    fetch = writer(b"v" * 5000, Path(log))

    def slow_fetch(fh: BinaryIO) -> None:
        time.sleep(0.3)  # a download takes a while: without the lock, every reader would start its own
        fetch(fh)

    start.wait()
    path = cache.path("orgs/o/projects/p/assets/video", slow_fetch)
    out.put((str(path), path.read_bytes() == b"v" * 5000))


def test_concurrent_readers_share_one_download(tmp_path: Path) -> None:
    log = tmp_path / "downloads.log"
    log.touch()
    ctx = multiprocessing.get_context("fork")  # worker processes of one node
    out, start = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_read, args=(str(tmp_path / "media"), str(log), start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len({path for path, _ in results}) == 1 and all(ok for _, ok in results)
    assert len(log.read_text().split()) == 1, "the object was downloaded more than once"
    assert not list((tmp_path / "media").glob("*.part"))


def test_the_node_names_its_cache_not_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    settings = Settings(home=tmp_path / "control-plane", storage=StorageSettings(cache_max_bytes=1234))
    handle = StoreObjects(settings, "org_1", "proj_1")
    assert handle.cache == MediaCache(tmp_path / "control-plane" / "cache" / "media", 1234)

    settings.storage.cache_dir = tmp_path / "job-setting"
    assert handle.cache_dir == tmp_path / "job-setting"

    # On a worker node with its own setting, the handle pickled by the driver uses the node's directory.
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "node-w1"))
    worker_side = pickle.loads(pickle.dumps(handle))
    assert worker_side.cache == MediaCache(tmp_path / "node-w1", 1234)
