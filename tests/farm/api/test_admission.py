"""Under a burst of clients the control plane queues requests instead of running out of database connections.

A real uvicorn control plane on PostgreSQL with a deliberately tiny pool:
more clients than pooled connections and worker threads all get their
answers (no 5xx); a request that cannot get its turn, or a connection, in
time gets 503 with ``Retry-After`` rather than a 500.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, Role
from farm.settings import Settings

CLIENTS = 120  # more than the 40 worker threads and far more than the pooled connections


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def control_plane(url: str, home: Path, *, pool: int, turns: int, pool_timeout_s: float, admission_wait_s: float) -> Iterator[tuple[str, str, Database]]:
    """A control plane (no dispatcher, no webhooks) serving on a free port; yields its URL, an admin key and its database."""
    settings = Settings(
        home=home, db={"url": url, "pool_size": pool, "max_overflow": 0, "pool_timeout_s": pool_timeout_s},
        api={"port": _free_port(), "max_concurrent_requests": turns, "admission_wait_s": admission_wait_s},
        storage={"local_root": home / "objects"}, dispatch={"enabled": False}, webhooks={"enabled": False},
    )
    db = Database.of(settings.db)
    db.upgrade()
    with db.session() as s:
        org = create_org(s, f"burst-{home.name}")
        _, key = issue_key(s, org.id, "burst", Role.admin)
        s.commit()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, db=db, migrate=False), host="127.0.0.1", port=settings.api.port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "control plane did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api.port}", key, db
    finally:
        server.should_exit = True
        thread.join(15)
        db.dispose()


async def _burst(base: str, key: str, paths: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=len(paths))
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=120) as client:
        return await asyncio.gather(*(client.get(p) for p in paths))


def test_a_burst_past_the_pool_and_the_threads_gets_every_answer(module_database: str, tmp_path: Path) -> None:
    with control_plane(module_database, tmp_path / "burst", pool=2, turns=2, pool_timeout_s=30, admission_wait_s=60) as (base, key, _):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
            project = c.post("/v1/projects", json={"name": "burst"}).json()["id"]
        paths = [("/v1/jobs", "/v1/projects", f"/v1/projects/{project}", f"/v1/projects/{project}/assets")[i % 4] for i in range(CLIENTS)]
        answers = asyncio.run(_burst(base, key, paths))
    assert Counter(r.status_code for r in answers) == {200: CLIENTS}, [r.text for r in answers if r.status_code != 200][:3]


def test_no_turn_or_no_connection_in_time_is_503_with_retry_after(module_database: str, tmp_path: Path) -> None:
    with control_plane(module_database, tmp_path / "busy", pool=1, turns=1, pool_timeout_s=4, admission_wait_s=1) as (base, key, db):
        headers = {"Authorization": f"Bearer {key}"}
        held = db.engine.connect()  # the pool's only connection, held by someone else
        held.exec_driver_sql("SELECT 1")
        with httpx.Client(base_url=base, headers=headers, timeout=30) as first, httpx.Client(base_url=base, headers=headers, timeout=30) as second:
            admitted: list[httpx.Response] = []
            waiting = threading.Thread(target=lambda: admitted.append(first.get("/v1/projects")))
            waiting.start()  # takes the only turn, then waits for the connection
            time.sleep(0.5)
            turned_away = second.get("/v1/projects")
            held.close()  # the connection comes back before the first request's pool timeout
            waiting.join(30)
            assert turned_away.status_code == 503 and turned_away.headers["retry-after"] == "1", turned_away.text
            assert turned_away.json()["error"]["type"] == "unavailable"
            assert admitted[0].status_code == 200, admitted[0].text

            held = db.engine.connect()
            held.exec_driver_sql("SELECT 1")
            try:
                starved = second.get("/v1/projects")  # its turn, but no connection within the pool timeout
            finally:
                held.close()
            assert starved.status_code == 503 and starved.headers["retry-after"], starved.text
            assert "database is busy" in starved.json()["error"]["message"]
            assert second.get("/healthz").status_code == 200
            assert second.get("/v1/projects").status_code == 200  # and the farm serves again
