"""The ObjectStore contract, asserted identically against LocalStore and S3Store.

S3 runs against a real moto server over loopback (tests/fixtures/s3.py).
Backend-specific behaviour (presigned URLs, multipart, root escape) follows
the shared contract at the bottom of the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from farm.settings import Settings
from farm.storage import (
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StorageError,
    load_signing_key,
    open_store,
)
from tests.fixtures.s3 import TEST_PART_SIZE, S3Server, unique_bucket
from tests.fixtures.network import HangUpServer

MiB = 1024**2
KEY = "orgs/o1/projects/p1/assets/a1"
SECRET = b"k" * 32


class PseudoRandomReader:
    """A ``.read(n)`` stream of seeded random bytes that never holds more than one request.

    Records the largest request so tests can prove the store streamed.
    """

    def __init__(self, total: int, seed: int = 7) -> None:
        self.remaining = total
        self.rng = random.Random(seed)
        self.sha256 = hashlib.sha256()
        self.largest_read = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise AssertionError("store asked for the whole stream at once")
        self.largest_read = max(self.largest_read, n)
        chunk = self.rng.randbytes(min(n, self.remaining))
        self.remaining -= len(chunk)
        self.sha256.update(chunk)
        return chunk


def read_all(chunks: object) -> bytes:
    return b"".join(chunks)  # type: ignore[arg-type]


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "objects", SECRET, "http://farm.test/")
    store.ensure_ready()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


# -- the shared contract ------------------------------------------------------


def test_round_trip_with_known_length(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    info = store.put(KEY, io.BytesIO(data), length=len(data), content_type="video/mp4")
    assert (info.key, info.size, info.content_type) == (KEY, len(data), "video/mp4")
    assert read_all(store.get(KEY)) == data
    assert store.exists(KEY)


def test_empty_object_round_trips(store: ObjectStore) -> None:
    assert store.put(KEY, io.BytesIO(b"")).size == 0
    assert read_all(store.get(KEY)) == b""


def test_unknown_length_upload_streams_in_parts(store: ObjectStore) -> None:
    total = 12 * MiB + 123  # three parts of 5 MiB, the last one short
    reader = PseudoRandomReader(total)
    info = store.put(KEY, reader)  # type: ignore[arg-type]
    assert info.size == total
    assert reader.largest_read <= TEST_PART_SIZE + 1  # minio reads part_size+1 to spot the end
    got = hashlib.sha256()
    for chunk in store.get(KEY, chunk_size=MiB):
        assert len(chunk) <= MiB
        got.update(chunk)
    assert got.hexdigest() == reader.sha256.hexdigest()


def test_short_stream_with_declared_length_fails(store: ObjectStore) -> None:
    with pytest.raises(StorageError):
        store.put(KEY, io.BytesIO(b"only ten b"), length=20)
    assert not store.exists(KEY)


def test_ranged_get(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    store.put(KEY, io.BytesIO(data), length=len(data))
    assert read_all(store.get(KEY, offset=100, length=50)) == data[100:150]
    assert read_all(store.get(KEY, offset=10_000)) == data[10_000:]
    assert read_all(store.get(KEY, offset=10_200, length=1_000)) == data[10_200:]  # clipped at end
    assert read_all(store.get(KEY, offset=len(data))) == b""
    assert read_all(store.get(KEY, offset=5, length=0)) == b""
    chunks = list(store.get(KEY, chunk_size=1_000))
    assert len(chunks) > 1 and all(len(c) <= 1_000 for c in chunks)
    with pytest.raises(ValueError):
        store.get(KEY, offset=-1)


def test_stat_describes_the_object(store: ObjectStore) -> None:
    data = b"hello farm" * 100
    before = datetime.now(UTC) - timedelta(seconds=5)
    put_info = store.put(KEY, io.BytesIO(data), length=len(data), content_type="text/plain")
    info = store.stat(KEY)
    assert info == put_info
    assert (info.size, info.content_type) == (len(data), "text/plain")
    assert info.etag == hashlib.md5(data).hexdigest()  # both backends: md5 for single-part
    assert info.last_modified.tzinfo is not None
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_overwrite_replaces_bytes_and_type(store: ObjectStore) -> None:
    store.put(KEY, io.BytesIO(b"first"), content_type="text/plain")
    store.put(KEY, io.BytesIO(b"second!"), content_type="application/json")
    assert read_all(store.get(KEY)) == b"second!"
    assert store.stat(KEY).content_type == "application/json"


def test_missing_key_is_object_not_found(store: ObjectStore) -> None:
    missing = "orgs/o1/projects/p1/assets/nope"
    with pytest.raises(ObjectNotFound):
        store.stat(missing)
    with pytest.raises(ObjectNotFound) as caught:
        store.get(missing)  # raised eagerly, before iteration
    assert isinstance(caught.value, KeyError) and caught.value.key == missing
    with pytest.raises(ObjectNotFound):
        store.get(missing, length=0)
    assert not store.exists(missing)


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put(KEY, io.BytesIO(b"x"))
    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)
    store.delete("orgs/o1/never/existed")


BAD_KEYS = ["", "/etc/passwd", "a\\b", "a/../../b", "..", "a/\x00", "a//b", "a/", "./a", "x" * 1025]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected(store: ObjectStore, key: str) -> None:
    hour = timedelta(hours=1)
    for call in (
        lambda: store.put(key, io.BytesIO(b"x")),
        lambda: store.get(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.presigned_get_url(key, hour),
        lambda: store.presigned_put_url(key, hour),
    ):
        with pytest.raises(ValueError):
            call()


def test_presign_expiry_is_bounded(store: ObjectStore) -> None:
    for bad in (timedelta(0), timedelta(days=8)):
        with pytest.raises(ValueError):
            store.presigned_get_url(KEY, bad)


# -- readiness ------------------------------------------------------------------


def test_local_ensure_ready_creates_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "deep" / "objects", SECRET, "http://farm.test")
    with pytest.raises(StorageError):
        store.check()
    with pytest.raises(StorageError):
        store.put(KEY, io.BytesIO(b"x"))
    store.ensure_ready()
    store.ensure_ready()
    store.check()
    store.put(KEY, io.BytesIO(b"x"))


def test_s3_ensure_ready_creates_bucket(s3_server: S3Server) -> None:
    store = s3_server.store(unique_bucket())
    with pytest.raises(StorageError, match="does not exist"):
        store.check()
    with pytest.raises(ObjectNotFound):
        store.stat(KEY)
    with pytest.raises(StorageError):
        store.put(KEY, io.BytesIO(b"x"))  # a missing bucket is not a missing object on write
    store.ensure_ready()
    store.ensure_ready()
    store.check()
    assert store.put(KEY, io.BytesIO(b"x")).size == 1


def test_s3_check_fails_fast_when_unreachable() -> None:
    """The readiness probe gives up on the first failed attempt: no retries, no backoff."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connection refused
    with pytest.raises(StorageError, match="unreachable"):
        S3Store(f"127.0.0.1:{port}", "testing", "testing", "bucket", region="us-east-1").check()

    server = HangUpServer()
    try:
        with pytest.raises(StorageError, match="unreachable"):
            S3Store(f"127.0.0.1:{server.port}", "testing", "testing", "bucket", region="us-east-1").check()
    finally:
        server.close()
    assert server.connections == 1


# -- S3 specifics ---------------------------------------------------------------


def test_s3_unknown_length_upload_is_multipart(s3_store: S3Store) -> None:
    info = s3_store.put(KEY, PseudoRandomReader(11 * MiB))  # type: ignore[arg-type]
    assert info.etag.endswith("-3")  # S3 multipart etags end with the part count


def test_s3_presigned_get_downloads_bytes(s3_store: S3Store) -> None:
    data = os.urandom(50_000)
    s3_store.put(KEY, io.BytesIO(data), content_type="image/png")
    url = s3_store.presigned_get_url(KEY, timedelta(minutes=5), download_name="shot 01 ✓.png")
    resp = httpx.get(url)
    assert resp.status_code == 200 and resp.content == data
    disposition = resp.headers["content-disposition"]
    assert 'filename="shot 01 _.png"' in disposition and "shot%2001%20%E2%9C%93.png" in disposition
    # Not asserted: a tampered signature is refused. moto serves presigned URLs without
    # checking signatures, so that would test nothing; the SDK's SigV4 is trusted here.


def test_s3_presigned_put_uploads_bytes(s3_store: S3Store) -> None:
    data = os.urandom(20_000)
    url = s3_store.presigned_put_url(KEY, timedelta(minutes=5))
    resp = httpx.put(url, content=data, headers={"content-type": "audio/wav"})
    assert resp.status_code == 200, resp.text
    assert read_all(s3_store.get(KEY)) == data
    assert s3_store.stat(KEY).size == len(data)


# -- local specifics ------------------------------------------------------------


def _query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    assert parts.path.startswith("/v1/objects/")
    key = unquote(parts.path.removeprefix("/v1/objects/"))
    return key, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_local_presigned_get_verifies(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    url = local_store.presigned_get_url(KEY, timedelta(minutes=5), download_name="shot 01.png")
    assert url.startswith("http://farm.test/v1/objects/orgs/o1/projects/p1/assets/a1?")
    key, q = _query(url)
    assert q["method"] == "GET" and q["filename"] == "shot 01.png"
    verify = local_store.verify_presigned
    assert verify(key, "GET", q["expires"], q["signature"], download_name=q["filename"])
    assert not verify(key, "GET", q["expires"], q["signature"])  # filename is signed
    assert not verify(key, "GET", q["expires"], q["signature"], download_name="other.exe")
    assert not verify(key, "PUT", q["expires"], q["signature"], download_name=q["filename"])
    assert not verify(key + "x", "GET", q["expires"], q["signature"], download_name=q["filename"])
    tampered = ("0" if q["signature"][0] != "0" else "1") + q["signature"][1:]
    assert not verify(key, "GET", q["expires"], tampered, download_name=q["filename"])
    assert not verify(key, "GET", int(q["expires"]) + 60, q["signature"], download_name=q["filename"])
    assert not verify(key, "GET", "soon", q["signature"])
    monkeypatch.setattr(time, "time", lambda: int(q["expires"]) + 1)
    assert not verify(key, "GET", q["expires"], q["signature"], download_name=q["filename"])  # expired


def test_local_presigned_put_verifies(local_store: LocalStore) -> None:
    key, q = _query(local_store.presigned_put_url(KEY, timedelta(minutes=5)))
    assert q["method"] == "PUT" and "filename" not in q
    assert local_store.verify_presigned(key, "PUT", q["expires"], q["signature"])
    assert not local_store.verify_presigned(key, "GET", q["expires"], q["signature"])
    other = LocalStore(local_store.root, b"z" * 32, "http://farm.test")
    assert not other.verify_presigned(key, "PUT", q["expires"], q["signature"])  # other secret


def test_local_never_escapes_root(local_store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (local_store.root / "data" / "orgs").mkdir()
    (local_store.root / "data" / "orgs" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        local_store.put("orgs/evil/x", io.BytesIO(b"x"))
    assert list(outside.iterdir()) == []


def test_local_sidecars_and_temp_files_stay_out_of_the_key_space(local_store: LocalStore) -> None:
    local_store.put(KEY, io.BytesIO(b"x"), content_type="text/plain")
    assert not local_store.exists(KEY + ".json")
    assert not local_store.exists("orgs/o1/projects")  # a directory is not an object
    assert list((local_store.root / "tmp").iterdir()) == []
    assert sorted(p.name for p in (local_store.root / "data").rglob("*") if p.is_file()) == ["a1"]


def test_local_stale_sidecar_is_not_trusted(local_store: LocalStore) -> None:
    """A crash between replacing the bytes and the sidecar must not report the old etag."""
    local_store.put(KEY, io.BytesIO(b"old"), content_type="text/plain")
    sidecar = (local_store.root / "meta" / f"{KEY}.json").read_bytes()
    local_store.put(KEY, io.BytesIO(b"new"), content_type="text/csv")
    (local_store.root / "meta" / f"{KEY}.json").write_bytes(sidecar)
    assert local_store.stat(KEY).etag == hashlib.md5(b"new").hexdigest()


# -- factory --------------------------------------------------------------------


def test_open_store_builds_the_configured_backend(tmp_path: Path) -> None:
    local = Settings(home=tmp_path, storage={"local_root": tmp_path / "objects"})
    store = open_store(local)
    assert isinstance(store, LocalStore) and store.root == tmp_path / "objects"
    assert store.base_url == local.base_url
    key, q = _query(store.presigned_get_url(KEY, timedelta(minutes=1)))
    again = LocalStore(tmp_path, load_signing_key(tmp_path), "http://x")
    assert again.verify_presigned(key, "GET", q["expires"], q["signature"])  # key persisted in home

    remote = Settings(home=tmp_path, storage={"backend": "s3"}, s3={"bucket": "farm-b", "part_size": 8 * MiB})
    s3 = open_store(remote)
    assert isinstance(s3, S3Store) and (s3.bucket, s3.part_size) == ("farm-b", 8 * MiB)
