"""The control plane under load: 200 concurrent API clients for 60 s against `farm up` on PostgreSQL.

    .venv/bin/python benchmarks/load.py [--clients 200] [--seconds 60] [--clients-per-key 10] [--max-running 4]
                                        [--mix submit=3,get=3,list=2,events=1,assets=2] [--replay 0.2] [--drain-s 30]
                                        [--db-url URL] [--home DIR] [--profile FILE]

The farm is the process a user runs: ``farm up`` as a subprocess (embedded Ray
head, control plane, dispatcher) with a temp ``FARM_HOME``, free ports, Serve
not deployed, and ``FARM_DB__URL`` on a fresh database of a PostgreSQL server
of our own (the tests' ``PostgresServer``; or of ``--db-url``). Its admin key
creates one project per ``--clients-per-key`` clients, a ``member`` key for
each, and uploads ``--assets`` small files into each project.

Then ``--clients`` asyncio httpx clients (one connection each) run for
``--seconds``, each picking its next request by the ``--mix`` weights:

submit
    ``POST /v1/jobs`` of ``debug.sleep`` (one item, no delay: the cheapest kind
    that still goes through the dispatcher to a Ray Job) with a fresh
    ``Idempotency-Key``. A ``--replay`` share is sent again with the same key,
    as a client does after a timeout: half while the first is still in flight
    (the two race in the database), half after its answer. A replay must
    answer with the original job.
get / list
    ``GET /v1/jobs/{id}`` of a job this client submitted; ``GET /v1/jobs``
    (one page of 20, a third of them filtered by project).
events
    ``GET /v1/jobs/{id}/events`` (Server-Sent Events): open, read up to three
    events or until the job ends, close; at most 5 s on one stream. Its
    latency is the time to the first event (a stream with no event within
    the 5 s counts as *silent*, not as an error).
assets
    ``GET /v1/projects/{id}/assets`` (one page of 20).

The dispatcher runs at most ``--max-running`` jobs on Ray at once (default 4
of the head's 8 logical CPUs), so runner processes do not swamp the two cores
the control plane is measured on; the rest wait in the queue, which is the
point: the database holds the backlog. Jobs are not rate-limited per key (the
per-key limiter guards only the OpenAI routes), so 429s are counted apart but
not expected.

After the clients stop it waits up to ``--drain-s`` for the queue to drain,
cancels what is left through the API, and checks integrity against
PostgreSQL directly: every acknowledged submission (201, or 200 for a
replay) has exactly one job row with its key and the acknowledged id (else
*lost*); no key holds two rows and no replay answered another job (else
*duplicated*). It prints requests/s and p50/p99 latency overall and per
request kind, status counts (2xx, 4xx, 429 apart, 5xx, transport errors),
the machine and its load average before and after. Exit status 1 when a
target is missed: 5xx = 0, lost = 0, duplicated = 0.

``--profile FILE`` samples the ``farm up`` process with py-spy during the
clients' run (collapsed stacks, for a flame graph); ``--home DIR`` keeps the
run's ``FARM_HOME``, with ``farm-up.log``, the server's own account of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the tests' PostgreSQL fixture importable
    sys.path.insert(0, str(ROOT))

from report import cpu_model, percentile  # noqa: E402  (benchmarks/, the script's own folder)
from tests.fixtures.postgres import PostgresServer, create_database, drop_database  # noqa: E402
FARM = Path(sys.executable).parent / "farm"
KINDS = ("submit", "replay", "get", "list", "events", "assets")
TERMINAL = ("succeeded", "failed", "cancelled")
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
EVENTS_S = 5.0  # longest an events client stays on one stream


@dataclass
class Tally:
    """What the clients saw: per request kind, latencies and status classes; per idempotency key, the job acknowledged."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    acked: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> job id of the first 201/200
    sent: set[str] = field(default_factory=set)
    replay_mismatch: list[tuple[str, str, str]] = field(default_factory=list)  # (key, first id, other id)
    samples_5xx: list[str] = field(default_factory=list)
    samples_transport: list[str] = field(default_factory=list)

    def record(self, kind: str, seconds: float, code: int | None, detail: str = "") -> None:
        if code is None:
            self.status[kind]["transport"] += 1
            if len(self.samples_transport) < 5:
                self.samples_transport.append(f"{kind}: {detail}")
            return
        if code == 0:
            self.status[kind]["silent"] += 1
            return
        self.latency[kind].append(seconds)
        cls = "429" if code == 429 else f"{code // 100}xx"
        self.status[kind][cls] += 1
        if code >= 500 and len(self.samples_5xx) < 5:
            self.samples_5xx.append(f"{kind} {code}: {detail[:300]}")

    def acknowledge(self, key: str, job_id: str) -> None:
        first = self.acked.setdefault(key, job_id)
        if first != job_id:
            self.replay_mismatch.append((key, first, job_id))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


@contextmanager
def postgres_database(db_url: str | None) -> Iterator[str]:
    """A fresh database: on ``db_url``'s server, or on a PostgreSQL server of our own for this run."""
    server = None if db_url else PostgresServer().start()
    base = db_url.rstrip("/") if db_url else server.url  # type: ignore[union-attr]
    url = create_database(base)
    try:
        yield url
    finally:
        drop_database(url)
        if server is not None:
            server.remove()


@contextmanager
def farm_up(db_url: str, home: Path, max_running: int) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """`farm up` as a user runs it, on free ports; yields its URL, the admin key and the process."""
    api_port = free_port()
    env = {**os.environ, "FARM_HOME": str(home), "FARM_DB__URL": db_url, "FARM_SERVE__DEPLOY": "false",
           "FARM_RAY__HEAD_PORT": str(free_port()), "FARM_RAY__DASHBOARD_PORT": str(free_port()),
           "FARM_DISPATCH__MAX_RUNNING": str(max_running), "FARM_DISPATCH__GPU_DEMAND": "false"}
    log = (home / "farm-up.log").open("wb")
    proc = subprocess.Popen([str(FARM), "up", "--port", str(api_port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"farm up exited ({proc.returncode}); see {home / 'farm-up.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("farm up did not answer /readyz within 240 s")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        key = json.loads((home / "credentials.json").read_text())["api_key"]
        yield url, key, proc
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the farm stops its Ray head and dispatcher itself
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def set_up(url: str, admin_key: str, groups: int, assets: int) -> list[tuple[str, str]]:
    """One project and one member key per group of clients, ``assets`` small files in each project."""
    out = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=TIMEOUT) as c:
        for g in range(groups):
            project = c.post("/v1/projects", json={"name": f"load-{g}"}).raise_for_status().json()["id"]
            key = c.post("/v1/keys", json={"name": f"load-{g}", "role": "member"}).raise_for_status().json()["key"]
            for a in range(assets):
                body = f"load test asset {g}-{a}\n".encode() * 16
                c.post(f"/v1/projects/{project}/assets", files={"file": (f"note-{a}.txt", body, "text/plain")}).raise_for_status()
            out.append((project, key))
    return out


class Client:
    """One API client: its own connection and key, its own jobs; picks its next request by the mix."""

    def __init__(self, url: str, key: str, project: str, tally: Tally, weights: dict[str, float], replay: float, rng: random.Random) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT,
                                      limits=httpx.Limits(max_connections=2, max_keepalive_connections=2))
        self.project, self.tally, self.replay, self.rng = project, tally, replay, rng
        self.kinds, self.weights = list(weights), list(weights.values())
        self.jobs: list[str] = []

    async def run(self, until: float) -> None:
        async with self.http:
            while time.monotonic() < until:
                kind = self.rng.choices(self.kinds, self.weights)[0]
                if kind != "submit" and not self.jobs and kind in ("get", "events"):
                    kind = "submit"
                await getattr(self, kind)()

    async def timed(self, kind: str, method: str, path: str, **kw: object) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            self.tally.record(kind, time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}")
            return None
        self.tally.record(kind, time.perf_counter() - t0, r.status_code, r.text)
        return r

    async def post_job(self, kind: str, key: str) -> None:
        body = {"kind": "debug.sleep", "spec": {"items": 1, "delay_s": 0}, "project_id": self.project}
        r = await self.timed(kind, "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
        if r is not None and r.status_code in (200, 201):
            job_id = r.json()["id"]
            self.tally.acknowledge(key, job_id)
            if job_id not in self.jobs:
                self.jobs.append(job_id)

    async def submit(self) -> None:
        key = f"load-{uuid.uuid4().hex}"
        self.tally.sent.add(key)
        if self.rng.random() >= self.replay:
            await self.post_job("submit", key)
        elif self.rng.random() < 0.5:  # the retry goes out while the first is still in flight
            await asyncio.gather(self.post_job("submit", key), self.post_job("replay", key))
        else:
            await self.post_job("submit", key)
            await self.post_job("replay", key)

    async def get(self) -> None:
        await self.timed("get", "GET", f"/v1/jobs/{self.rng.choice(self.jobs)}")

    async def list(self) -> None:
        params = {"limit": 20, **({"project_id": self.project} if self.rng.random() < 1 / 3 else {})}
        await self.timed("list", "GET", "/v1/jobs", params=params)

    async def assets(self) -> None:
        await self.timed("assets", "GET", f"/v1/projects/{self.project}/assets", params={"limit": 20})

    async def events(self) -> None:
        job_id = self.rng.choice(self.jobs[-5:])
        t0 = time.perf_counter()
        try:
            async with self.http.stream("GET", f"/v1/jobs/{job_id}/events") as r:
                if r.status_code != 200:
                    await r.aread()
                    self.tally.record("events", time.perf_counter() - t0, r.status_code, r.text)
                    return
                seen, first = 0, None
                try:
                    async with asyncio.timeout(EVENTS_S):  # a queued job may say nothing for a while: close, as a page left open would not
                        async for line in r.aiter_lines():
                            if line.startswith("data:"):
                                first = first if first is not None else time.perf_counter() - t0
                                seen += 1
                                if seen >= 3:
                                    break
                except TimeoutError:
                    pass
                self.tally.record("events", first if first is not None else time.perf_counter() - t0, 200 if first is not None else 0,
                                  "no event within the bound")
        except httpx.TransportError as exc:
            self.tally.record("events", time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}")


async def drive(url: str, groups: list[tuple[str, str]], clients: int, seconds: float, weights: dict[str, float], replay: float,
                seed: int) -> tuple[Tally, float]:
    tally = Tally()
    rng = random.Random(seed)
    pool = []
    for i in range(clients):
        project, key = groups[i % len(groups)]
        pool.append(Client(url, key, project, tally, weights, replay, random.Random(rng.random())))
    t0 = time.monotonic()
    await asyncio.gather(*(c.run(t0 + seconds) for c in pool))
    return tally, time.monotonic() - t0


def job_states(db_url: str) -> Counter[str]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all()
    engine.dispose()
    return Counter({state: n for state, n in rows})


def drain(url: str, admin_key: str, db_url: str, wait_s: float) -> tuple[float, Counter[str], int]:
    """Wait up to ``wait_s`` for every job to end, then cancel what is left through the API."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s:
        states = job_states(db_url)
        if not any(n for s, n in states.items() if s not in TERMINAL):
            break
        time.sleep(1)
    waited = time.monotonic() - t0
    states = job_states(db_url)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        left = [r[0] for r in conn.execute(text("SELECT id FROM jobs WHERE state NOT IN ('succeeded','failed','cancelled')"))]
    engine.dispose()

    async def cancel_all() -> int:
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=TIMEOUT) as c:
            async def one(job_id: str) -> bool:
                async with sem:
                    return (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
            return sum(await asyncio.gather(*(one(j) for j in left)))

    return waited, states, asyncio.run(cancel_all()) if left else 0


def integrity(db_url: str, tally: Tally) -> tuple[int, int, int, int]:
    """(lost, duplicated, rows for keys never acknowledged, rows for keys never sent) from the jobs table itself."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT idempotency_key, id FROM jobs WHERE idempotency_key LIKE 'load-%'")).all()
    engine.dispose()
    by_key: dict[str, list[str]] = defaultdict(list)
    for key, job_id in rows:
        by_key[key].append(job_id)
    lost = sum(1 for key, job_id in tally.acked.items() if by_key.get(key) != [job_id])
    duplicated = sum(1 for ids in by_key.values() if len(ids) > 1) + len(tally.replay_mismatch)
    unacked = sum(1 for key in by_key if key in tally.sent and key not in tally.acked)
    stray = sum(1 for key in by_key if key not in tally.sent)
    return lost, duplicated, unacked, stray


def report(tally: Tally, wall: float) -> int:
    total_ok = sum(len(v) for v in tally.latency.values())
    total = sum(sum(c.values()) for c in tally.status.values())
    print(f"\n{total} requests in {wall:.1f} s: {total / wall:.1f} requests/s ({total_ok} answered)")
    print("| request | count | req/s | p50 ms | p99 ms | 2xx | 4xx (not 429) | 429 | 5xx | transport errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    all_lat: list[float] = []
    fives = 0
    for kind in KINDS:
        c, lat = tally.status.get(kind, Counter()), tally.latency.get(kind, [])
        n = sum(c.values())
        if not n:
            continue
        all_lat += lat
        fives += c["5xx"]
        print(f"| {kind} | {n} | {n / wall:.1f} | {percentile(lat, 50) * 1000:.0f} | {percentile(lat, 99) * 1000:.0f} | {c['2xx']} | {c['4xx']} | "
              f"{c['429']} | {c['5xx']} | {c['transport']} |")
    s = Counter[str]()
    for c in tally.status.values():
        s.update(c)
    print(f"| all | {total} | {total / wall:.1f} | {percentile(all_lat, 50) * 1000:.0f} | {percentile(all_lat, 99) * 1000:.0f} | {s['2xx']} | "
          f"{s['4xx']} | {s['429']} | {s['5xx']} | {s['transport']} |")
    print(f"(events: latency to the first event; {tally.status['events']['silent']} streams had no event within {EVENTS_S:.0f} s)")
    for sample in tally.samples_5xx:
        print(f"  5xx sample: {sample}")
    for sample in tally.samples_transport:
        print(f"  transport error sample: {sample}")
    return fives


def parse_mix(text_: str) -> dict[str, float]:
    mix = {}
    for part in text_.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in KINDS or name.strip() == "replay":
            raise argparse.ArgumentTypeError(f"--mix: unknown request kind {name!r} (submit, get, list, events, assets)")
        mix[name.strip()] = float(weight)
    return mix


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients-per-key", type=int, default=10, help="clients sharing one member key and project")
    ap.add_argument("--mix", type=parse_mix, default=parse_mix("submit=3,get=3,list=2,events=1,assets=2"))
    ap.add_argument("--replay", type=float, default=0.2, help="share of submissions sent again with the same Idempotency-Key")
    ap.add_argument("--assets", type=int, default=5, help="small files uploaded into each project before the run")
    ap.add_argument("--max-running", type=int, default=4, help="the dispatcher's cap on jobs running on Ray at once")
    ap.add_argument("--drain-s", type=float, default=30, help="how long to wait for the queue to drain before cancelling the rest")
    ap.add_argument("--db-url", default=None, help="PostgreSQL server URL without database name; default: a server of our own")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy the farm up process during the run into this file")
    ap.add_argument("--home", type=Path, default=None, help="FARM_HOME of the run, kept afterwards (farm-up.log); default: a temp dir, removed")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"machine: {machine()}")
    print(f"load average before: {load_avg()}")
    groups_n = max(1, -(-args.clients // args.clients_per_key))
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-load-"))
    home.mkdir(parents=True, exist_ok=True)
    try:
        with postgres_database(args.db_url) as db_url, farm_up(db_url, home, args.max_running) as (url, admin_key, proc):
            groups = set_up(url, admin_key, groups_n, args.assets)
            print(f"farm up on PostgreSQL at {url}; {args.clients} clients over {groups_n} member keys and projects "
                  f"({args.clients_per_key} per key; jobs have no per-key rate limit), {args.assets} assets each; "
                  f"mix {args.mix}, replay {args.replay:.0%}; dispatcher max_running {args.max_running}; {args.seconds:.0f} s")
            spy = None
            if args.profile:
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(proc.pid), "-d", str(int(args.seconds)), "-f", "raw",
                                        "-o", str(args.profile), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            tally, wall = asyncio.run(drive(url, groups, args.clients, args.seconds, args.mix, args.replay, args.seed))
            if spy is not None:
                spy.wait(timeout=120)
            print(f"load average at the end of the run: {load_avg()}")
            fives = report(tally, wall)
            waited, states, cancelled = drain(url, admin_key, db_url, args.drain_s)
            print(f"\njobs after {waited:.0f} s of draining (bound {args.drain_s:.0f} s): "
                  f"{', '.join(f'{s} {n}' for s, n in sorted(states.items()))}; cancelled the {cancelled} left through the API")
            lost, duplicated, unacked, stray = integrity(db_url, tally)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    replays = len(tally.latency.get("replay", []))
    print(f"submissions: {len(tally.sent)} keys sent, {len(tally.acked)} acknowledged, {replays} replays answered; "
          f"{unacked} jobs exist for keys whose answer never arrived (a client may still retry them), {stray} for keys never sent")
    print(f"load average after: {load_avg()}")
    print("\n| target | measured | ok |")
    print("|---|---|---|")
    ok = True
    for name, value in (("5xx = 0", fives), ("lost jobs = 0", lost), ("duplicated jobs = 0", duplicated)):
        ok &= value == 0
        print(f"| {name} | {value} | {'yes' if value == 0 else 'MISSED'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
