"""Signing key lifecycle and HMAC URL signatures for the local store."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from farm.storage import StorageError, load_signing_key
from farm.storage.signing import sign, verify

SECRET = b"s" * 32
KEY = "orgs/o/projects/p/assets/a"


def test_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_signing_key(home)
    path = home / "signing_key"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(home) == first
    assert [p.name for p in home.iterdir()] == ["signing_key"]  # no temp files left


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_signing_key(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "signing_key").write_bytes(b"short")
    with pytest.raises(StorageError, match="signing_key"):
        load_signing_key(tmp_path)


def test_signature_binds_every_field() -> None:
    sig = sign(SECRET, KEY, "GET", 2_000, download_name="a.mp4")
    assert verify(SECRET, KEY, "get", 2_000, sig, download_name="a.mp4", now=1_000)
    assert verify(SECRET, KEY, "GET", 2_000, sig.upper(), download_name="a.mp4", now=1_000)
    for changed in (
        dict(secret=b"t" * 32),
        dict(key=KEY + "2"),
        dict(method="PUT"),
        dict(expires_at=2_001),
        dict(download_name=None),
    ):
        args = dict(secret=SECRET, key=KEY, method="GET", expires_at=2_000, download_name="a.mp4") | changed
        assert not verify(args.pop("secret"), signature=sig, now=1_000, **args)  # type: ignore[arg-type]


def test_expired_and_garbage_signatures_fail() -> None:
    sig = sign(SECRET, KEY, "GET", 2_000)
    assert not verify(SECRET, KEY, "GET", 2_000, sig, now=2_001)
    assert not verify(SECRET, KEY, "GET", 2_000, "", now=1_000)
    assert not verify(SECRET, KEY, "GET", 2_000, "é" * 64, now=1_000)
