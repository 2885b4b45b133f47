"""A 200 MiB upload streams through the control plane: its memory barely moves.

The control plane runs as its own process (uvicorn, as in production) on
PostgreSQL and the S3 server; the test samples that process's RSS while the
upload streams in, and checks the stored bytes by SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from farm.accounts import create_org, issue_key
from farm.db import Database, Role
from tests.fixtures.s3 import S3Server, unique_bucket

MiB = 1024 * 1024
TOTAL = 200 * MiB
BLOCK = 1 * MiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(postgres_url: str, s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[str, str]]:
    db = Database(postgres_url)
    db.upgrade()
    with db.session() as s:
        org = create_org(s, "mem")
        _, key = issue_key(s, org.id, "mem", Role.admin)
        s.commit()
    db.dispose()
    port = _free_port()
    env = {
        **os.environ,
        "FARM_HOME": str(tmp_path),
        "FARM_DB__URL": postgres_url,
        "FARM_STORAGE__BACKEND": "s3",
        "FARM_S3__ENDPOINT": s3_server.endpoint,
        "FARM_S3__ACCESS_KEY": s3_server.access_key,
        "FARM_S3__SECRET_KEY": s3_server.secret_key,
        "FARM_S3__REGION": s3_server.region,
        "FARM_S3__BUCKET": unique_bucket(),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "farm.api.app:create_app", "--factory", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("control plane did not start")
        yield url, key
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _multipart(boundary: str, name: str, total: int, digest: "hashlib._Hash") -> Iterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    seed = hashlib.sha256(b"seed").digest()
    for i in range(total // BLOCK):
        block = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() * (BLOCK // 32))
        digest.update(block)
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def test_200_mib_upload_keeps_memory_flat(server: tuple[str, str]) -> None:
    url, key = server
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        pid = next(p.pid for p in psutil.Process().children() if "uvicorn" in " ".join(p.cmdline()))
        proc = psutil.Process(pid)
        project = client.post("/v1/projects", json={"name": "big"}).json()
        warm = client.post(f"/v1/projects/{project['id']}/assets", files={"file": ("warm.bin", os.urandom(6 * MiB))})
        assert warm.status_code == 201
        baseline = proc.memory_info().rss
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, proc.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        digest = hashlib.sha256()
        boundary = "farmboundary7MA4YWxkTrZu0gW"
        try:
            r = client.post(
                f"/v1/projects/{project['id']}/assets",
                content=_multipart(boundary, "big.bin", TOTAL, digest),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
        finally:
            done.set()
            sampler.join()
        assert r.status_code == 201, r.text
        asset = r.json()
        assert asset["size"] == TOTAL and asset["sha256"] == digest.hexdigest()
        growth = (peak - baseline) / MiB
        print(f"control plane RSS: baseline {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB, growth {growth:.1f} MiB")
        assert growth < 50, f"control plane grew {growth:.1f} MiB while streaming 200 MiB"
        # and the bytes stored are the bytes sent
        got = hashlib.sha256()
        with client.stream("GET", f"/v1/assets/{asset['id']}/content") as resp:
            for chunk in resp.iter_bytes(1 << 20):
                got.update(chunk)
        assert got.hexdigest() == asset["sha256"]
