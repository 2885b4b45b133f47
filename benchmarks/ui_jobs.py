"""The dashboard's jobs page: server time for an org with 10,000 jobs against one with 10.

    .venv/bin/python benchmarks/ui_jobs.py [--jobs 10000] [--small 10] [--reps 41] [--db-url URL]

Each side gets a fresh database (SQLite in a temp dir, or a new database on
the PostgreSQL server of ``--db-url``, e.g. ``postgresql+psycopg://farm@127.0.0.1:5432``),
migrated by Alembic, with one org whose jobs are inserted directly as rows
(time-ordered ids, states spread over all six, a few projects and kinds).
A second org with the same number of jobs, submitted interleaved with the
first's, shares the table, so the page must find its org's jobs rather than
read the whole table. The control plane's
ASGI app answers in-process through httpx (Starlette's TestClient): no
network, no browser, so the time is the server's — session lookup, the
keyset-paged query, and the template.

Per side it times, median of ``--reps`` after two warm-up rounds, each round visiting every page on both sides
(so load from anything else on the machine falls on all alike): the first page
(``/ui/jobs``), a state filter (``?state=succeeded``), a kind filter, and
the fifth page (following ``next_cursor``). A third org with exactly one
page of jobs (50) sits between the two: 10 jobs render 10 rows, 10,000 render
50, so 10,000 / 50 is the cost of history alone. It prints the medians and
both ratios per page; the target is 10,000 / 10 at most 1.5x.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text

from farm.accounts import create_org, issue_key
from farm.api import create_app
from farm.db import Database, Job, Project, Role
from farm.ids import new_id
from farm.settings import Settings, StorageSettings

STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "running", "queued", "cancel_requested")
KINDS = ("debug.sleep", "video.shots", "batch.chat", "video.restyle")
PAGE = 50  # one full page of the list: the middle side, so history size and rows shown can be told apart


def fresh_db(base: str | None, tmp: Path, label: str) -> str:
    if base is None:
        return f"sqlite:///{tmp / f'{label}.db'}"
    name = f"bench_ui_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{base.rstrip('/')}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{base.rstrip('/')}/{name}"


def fill(db: Database, project_ids: dict[str, list[str]], n: int) -> None:
    """``n`` jobs per org, the orgs' submissions interleaved in time as on a shared farm."""
    rows = []
    for i in range(n):
        for org_id, projects in project_ids.items():
            rows.append({"id": new_id("job"), "org_id": org_id, "project_id": projects[i % len(projects)], "kind": KINDS[i % len(KINDS)],
                         "spec": {"items": 10}, "priority": 50, "state": STATES[i % len(STATES)], "total": 10,
                         "succeeded": 10 if STATES[i % len(STATES)] == "succeeded" else i % 10, "failed": 0})
    with db.session() as s:
        for start in range(0, len(rows), 2000):
            s.execute(insert(Job), rows[start:start + 2000])
        s.commit()
        if db.engine.dialect.name == "postgresql":
            s.execute(text("ANALYZE jobs"))
            s.commit()


@contextmanager
def dashboard(db_url: str, tmp: Path, n: int) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A signed-in client of a control plane whose org has ``n`` jobs, and the URLs of the pages to time."""
    settings = Settings(home=tmp / f"home-{n}", db={"url": db_url}, storage=StorageSettings(backend="local", local_root=tmp / f"obj-{n}"),
                        dispatch={"enabled": False}, webhooks={"enabled": False})
    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        orgs = [create_org(s, f"bench-{n}-{k}") for k in ("mine", "other")]
        projects = {o.id: [Project(id=new_id("proj"), org_id=o.id, name=f"p{j}") for j in range(3)] for o in orgs}
        for ps in projects.values():
            s.add_all(ps)
        _, key = issue_key(s, orgs[0].id, "bench", Role.viewer)
        s.commit()
        project_ids = {org_id: [p.id for p in ps] for org_id, ps in projects.items()}
    fill(db, project_ids, n)
    with TestClient(create_app(settings, db=db, migrate=False)) as client:
        signed = client.post("/ui/signin", data={"api_key": key}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
        cursor_url = "/ui/jobs"
        for _ in range(4):  # the fifth page: four hops along next_cursor
            found = re.search(r'href="\?([^"]*cursor=job_[0-9a-f]+)"', client.get(cursor_url).text)
            if not found:
                break
            cursor_url = "/ui/jobs?" + found[1].replace("&amp;", "&")
        yield client, {"first page": "/ui/jobs", "state filter": "/ui/jobs?state=succeeded", "kind filter": "/ui/jobs?kind=video.shots",
                       "fifth page": cursor_url}
    db.dispose()


def timed(client: TestClient, url: str) -> float:
    t0 = time.perf_counter()
    r = client.get(url)
    dt = time.perf_counter() - t0
    assert r.status_code == 200 and "data-job=" in r.text, (url, r.status_code)
    return dt


def measure(sides: list[tuple[TestClient, dict[str, str]]], reps: int) -> dict[str, list[float]]:
    """Median per page and side; every round visits every page on every side, so the machine's other load falls on all alike."""
    labels = list(sides[0][1])
    samples: dict[tuple[str, int], list[float]] = {(label, k): [] for label in labels for k in range(len(sides))}
    for i in range(reps + 2):
        for label in labels:
            for k, (client, urls) in enumerate(sides):
                dt = timed(client, urls[label])
                if i >= 2:
                    samples[label, k].append(dt)
    return {label: [statistics.median(samples[label, k]) for k in range(len(sides))] for label in labels}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--reps", type=int, default=41)
    ap.add_argument("--db-url", default=None, help="PostgreSQL server URL without database name; default SQLite")
    args = ap.parse_args()
    sizes = [args.small, PAGE, args.jobs]
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as d, ExitStack() as stack:
        tmp = Path(d)
        sides = [stack.enter_context(dashboard(fresh_db(args.db_url, tmp, f"n{n}"), tmp, n)) for n in sizes]
        medians = measure(sides, args.reps)
    backend = "PostgreSQL" if args.db_url else "SQLite"
    print(f"jobs page server time, {backend}, median of {args.reps}; each org's jobs share the table with another org's as many")
    print(f"| page | {' | '.join(f'{n} jobs' for n in sizes)} | {args.jobs} / {args.small} | {args.jobs} / {PAGE} |")
    print("|---|" + "---|" * (len(sizes) + 2))
    worst = 0.0
    for label, m in medians.items():
        ratio = m[2] / m[0]
        worst = max(worst, ratio)
        print(f"| {label} | {' | '.join(f'{t * 1000:.1f} ms' for t in m)} | x{ratio:.2f} | x{m[2] / m[1]:.2f} |")
    print(f"worst {args.jobs} / {args.small} ratio x{worst:.2f} (target <= x1.5): {'ok' if worst <= 1.5 else 'OVER'}")
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
