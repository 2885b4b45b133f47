"""HMAC-SHA256 presigned URLs for the local store.

The local store has no server of its own, so its presigned URLs point at the
control plane, which checks them with :func:`verify` before streaming bytes.
The key never leaves ``FARM_HOME``; rotating it (deleting the file) voids all
outstanding URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

from farm.storage.base import StorageError

KEY_BYTES = 32
KEY_FILE = "signing_key"


def load_signing_key(home: Path) -> bytes:
    """Return ``home/signing_key``, creating 32 random bytes (mode 0600) on first use.

    Created by hard-linking a fully written temp file, so concurrent first
    starts agree on one key and nobody ever reads a half-written file.
    """
    path = Path(home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing_key.")  # mkstemp is 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise StorageError(f"{path} holds {len(key)} bytes, expected {KEY_BYTES}; delete it to rotate")
    return key


def _message(key: str, method: str, expires_at: int, download_name: str | None) -> bytes:
    # JSON keeps fields unambiguous whatever characters the key or name hold.
    return json.dumps([method.upper(), int(expires_at), key, download_name]).encode()


def sign(
    secret: bytes, key: str, method: str, expires_at: int, *, download_name: str | None = None
) -> str:
    """Hex signature binding object key, HTTP method, expiry and download name."""
    return hmac.new(secret, _message(key, method, expires_at, download_name), hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    key: str,
    method: str,
    expires_at: int,
    signature: str,
    *,
    download_name: str | None = None,
    now: float | None = None,
) -> bool:
    """True only for an unexpired URL whose signature matches (constant-time compare)."""
    if int(expires_at) < (time.time() if now is None else now):
        return False
    expected = sign(secret, key, method, expires_at, download_name=download_name)
    return hmac.compare_digest(expected.encode(), signature.lower().encode("ascii", "replace"))
