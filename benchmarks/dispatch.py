"""Dispatch overhead: N tiny jobs through the farm vs. straight to Ray Jobs.

    .venv/bin/python benchmarks/dispatch.py [--jobs 200] [--max-running 8] [--rounds 4] [--db-url URL]

One run starts one local Ray head (``LocalRayHead``, 8 logical CPUs, free
ports, token auth) and pushes N do-nothing jobs through it twice:

raw Ray
    The peer: ``JobSubmissionClient.submit_job`` straight to the head, the
    entrypoint a bare interpreter. A client-side limiter keeps at most
    ``--max-running`` jobs unfinished on Ray at once and submits the next only
    as earlier ones end, polling their status every ``--poll-s``. That is what
    the farm's dispatcher does (same cap, same poll period), so both sides run
    the same shape of load and the difference is the farm itself.
farm
    An embedded control plane (API + dispatcher thread, SQLite in a temp dir
    unless ``--db-url``) on the same head. N ``debug.sleep`` jobs with
    ``items=0`` go in through ``POST /v1/jobs``; each becomes a Ray Job running
    ``python -m farm.runner <id>``, which loads the job from the database,
    runs the (empty) pipeline and settles it ``succeeded``.

Per job we keep four moments, all on this machine's wall clock:

=========  ==================================  ====================================
moment     raw Ray                             farm
=========  ==================================  ====================================
enqueue    start of its round (all are ready;  just before its ``POST /v1/jobs``
           the client holds the queue)
dispatch   just before ``submit_job``          ``started_at``: the dispatcher claimed
                                               it and hands it to Ray
running    the driver's first line (it prints  the runner's ``runner`` event: the
           ``time.time()``), i.e. Ray's        process is up, imported, and has
           RUNNING + interpreter start         read its job from the database
done       Ray's ``end_time``                  ``finished_at`` (state ``succeeded``)
=========  ==================================  ====================================

Ray 2.60 records no time for PENDING -> RUNNING (``JobInfo.start_time`` is when
the Jobs API accepted the job, ``end_time`` when it ended, both in ms), and a
do-nothing driver can start and end between two status polls, so the raw
driver prints its own start time instead of running ``-c pass``; reading it
back from the job's logs is exact where polling would be 0 to ``poll_s`` late.

"enqueue ->" times include waiting for one of the ``--max-running`` slots
behind the other jobs of the round, so they are what a user with N/rounds jobs
sees; "dispatch ->" times are per job, without the queue. A round's wall time
runs from its first enqueue to its last done; a side's wall time is the sum
over its rounds and its throughput N over that. The breakdown table splits
each side's time into phases: for the farm the API write, the queue, the Ray
submission, the runner's start-up (interpreter, imports, database), the
pipeline and settle, and the runner's exit.

The sides alternate in ``--rounds`` rounds (raw, farm, raw, farm...) on the
same head, after one warm-up job, so that whatever else the machine is doing
and whatever Ray accumulates (finished jobs, logs) falls on both sides alike;
the farm is started for each of its rounds and stopped after, so it is idle
while raw Ray runs. Each round ends with the 1-minute load average, printed as
a hint of how busy the machine was.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from cluster.local import LocalRayHead, job_client
from farm.bootstrap import create_org_with_admin
from farm.db import Database, JobEvent
from farm.embedded import EmbeddedFarm
from farm.settings import Settings
from report import percentile  # benchmarks/, the script's own folder

RAW_ENTRYPOINT = f"{shlex.quote(sys.executable)} -c 'import time; print(repr(time.time()))'"
TERMINAL = ("succeeded", "failed", "cancelled")

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 120)  # no wrapping when piped to a file


@dataclass
class Timeline:
    """One job's moments in seconds since the epoch (None: never reached)."""

    enqueued: float
    dispatched: float | None = None
    running: float | None = None
    done: float | None = None
    ok: bool = False
    note: str = ""
    marks: dict[str, float | None] = field(default_factory=dict)  # extra moments for the breakdown


@dataclass
class Run:
    """One side's jobs over all rounds; wall time is the sum of its rounds' wall times."""

    name: str
    jobs: list[Timeline] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average after each round

    def add_round(self, jobs: list[Timeline]) -> None:
        ends = [j.done for j in jobs if j.done is not None]
        self.jobs += jobs
        self.walls.append(max(ends) - min(j.enqueued for j in jobs) if ends else float("nan"))
        self.loads.append(os.getloadavg()[0])

    @property
    def wall_s(self) -> float:
        return sum(self.walls)

    @property
    def throughput(self) -> float:
        return len(self.jobs) / self.wall_s

    @property
    def failed(self) -> list[Timeline]:
        return [j for j in self.jobs if not j.ok]

    def spans(self, start: Callable[[Timeline], float | None], end: Callable[[Timeline], float | None]) -> list[float]:
        pairs = ((start(j), end(j)) for j in self.jobs)
        return [b - a for a, b in pairs if a is not None and b is not None]


def epoch(stamp: str | None) -> float | None:
    """An API timestamp (ISO 8601, UTC) as seconds since the epoch."""
    if stamp is None:
        return None
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def ms(value: int | None) -> float | None:
    return value / 1000 if value is not None else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def startup_s(code: str, repeat: int = 5) -> float:
    """Median wall time of ``python -c <code>`` in a fresh interpreter."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- raw Ray ----------------------------------------------------------------------


def warm_up(client: Any) -> None:
    """One job first: the first on a new head pays for starting Ray's worker pool."""
    sid = client.submit_job(entrypoint=RAW_ENTRYPOINT)
    while not client.get_job_status(sid).is_terminal():
        time.sleep(0.1)


def run_raw(client: Any, n: int, max_running: int, poll_s: float) -> list[Timeline]:
    """One round: n jobs straight to Ray, at most `max_running` unfinished at once."""
    t0 = time.time()
    waiting = n
    inflight: dict[str, Timeline] = {}
    finished: dict[str, Timeline] = {}
    while waiting or inflight:
        while waiting and len(inflight) < max_running:
            job = Timeline(enqueued=t0, dispatched=time.time())
            inflight[client.submit_job(entrypoint=RAW_ENTRYPOINT)] = job
            waiting -= 1
        time.sleep(poll_s)
        for sid in list(inflight):
            status = client.get_job_status(sid)
            if status.is_terminal():
                finished[sid] = inflight.pop(sid)
                finished[sid].ok = status.value == "SUCCEEDED"
                finished[sid].note = status.value

    for sid, job in finished.items():
        info = client.get_job_info(sid)
        job.done = ms(info.end_time)
        job.marks["ray_accepted"] = ms(info.start_time)
        job.running = _printed_time(client.get_job_logs(sid))
        if job.running is None:
            job.ok, job.note = False, f"{job.note}; no start time in the driver's log"
    return list(finished.values())


def _printed_time(log: str) -> float | None:
    """The driver's own time.time(): the log's last line (Ray writes its own lines above it)."""
    for line in reversed(log.strip().splitlines()):
        try:
            return float(line)
        except ValueError:
            continue
    return None


# --- the farm -----------------------------------------------------------------------


def farm_settings(home: Path, head: LocalRayHead, db_url: str | None, max_running: int, poll_s: float) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "api": {"port": free_port()},
        "ray": {"dashboard_url": head.dashboard_url, "address": head.address},
        "dispatch": {"poll_s": poll_s, "max_running": max_running},
    }
    if db_url:  # else SQLite under home
        values["db"] = {"url": db_url}
    return Settings(**values)


class FarmSide:
    """The embedded farm on the shared head, in a temp home.

    It is started for each of its rounds and stopped after, so its dispatcher
    does not tick (and take CPU) while raw Ray runs.
    """

    def __init__(self, settings: Settings, ray: Any) -> None:
        self.settings = settings
        self.ray = ray
        farm = EmbeddedFarm(settings, start_ray=False)
        farm.prepare()
        _, self.key = create_org_with_admin(farm.db, f"bench-{uuid.uuid4().hex[:8]}")
        farm.db.dispose()
        self.project: str | None = None

    def run_round(self, n: int, timeout_s: float) -> list[Timeline]:
        farm = EmbeddedFarm(self.settings, start_ray=False).start()
        try:
            auth = {"Authorization": f"Bearer {self.key}"}
            with httpx.Client(base_url=self.settings.base_url, headers=auth, timeout=60) as api:
                if self.project is None:
                    r = api.post("/v1/projects", json={"name": "dispatch-bench"})
                    r.raise_for_status()
                    self.project = str(r.json()["id"])
                return self._drive(api, farm.db, self.project, n, timeout_s)
        finally:
            farm.stop()

    def _drive(self, api: httpx.Client, db: Database, project: str, n: int, timeout_s: float) -> list[Timeline]:
        posted: dict[str, float] = {}
        for _ in range(n):
            t = time.time()
            r = api.post("/v1/jobs", json={"kind": "debug.sleep", "spec": {"items": 0}, "project_id": project})
            r.raise_for_status()
            posted[r.json()["id"]] = t

        deadline = time.monotonic() + timeout_s
        while _any_in(api, project, ("queued", "running", "cancel_requested")):
            if time.monotonic() > deadline:
                err.log(f"[red]farm: jobs still unfinished after {timeout_s:.0f} s")
                break
            time.sleep(0.5)

        runner = _runner_started(db, posted)
        jobs = []
        for pub in _list_jobs(api, project):
            if pub["id"] not in posted:  # an earlier round's
                continue
            job = Timeline(
                enqueued=posted[pub["id"]], dispatched=epoch(pub["started_at"]), running=runner.get(pub["id"]),
                done=epoch(pub["finished_at"]) if pub["state"] in TERMINAL else None, ok=pub["state"] == "succeeded",
                note=f"{pub['state']} after {pub['attempts']} attempt(s): {pub['error'] or ''}",
            )
            job.marks["created"] = epoch(pub["created_at"])
            if pub["ray_job_id"]:
                info = self.ray.get_job_info(pub["ray_job_id"])
                job.marks["ray_accepted"], job.marks["ray_end"] = ms(info.start_time), ms(info.end_time)
            jobs.append(job)
        return jobs


def _any_in(api: httpx.Client, project: str, states: Iterable[str]) -> bool:
    for state in states:
        r = api.get("/v1/jobs", params={"project_id": project, "state": state, "limit": 1})
        r.raise_for_status()
        if r.json()["data"]:
            return True
    return False


def _list_jobs(api: httpx.Client, project: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"project_id": project, "limit": 200} | ({"cursor": cursor} if cursor else {})
        r = api.get("/v1/jobs", params=params)
        r.raise_for_status()
        page = r.json()
        jobs += page["data"]
        if not (cursor := page["next_cursor"]):
            return jobs


def _runner_started(db: Database, job_ids: Iterable[str]) -> dict[str, float]:
    """When each job's (last) runner was up: its ``runner`` event."""
    with db.session() as s:
        rows = s.execute(
            select(JobEvent.job_id, JobEvent.created_at)
            .where(JobEvent.type == "runner", JobEvent.job_id.in_(list(job_ids)))
            .order_by(JobEvent.seq)
        )
        return {job_id: at.timestamp() for job_id, at in rows}


# --- report ---------------------------------------------------------------------------


def _s(value: float) -> str:
    return f"{value:.3f} s"


def _ratio(farm: float, raw: float) -> str:
    return f"×{farm / raw:.2f}" if raw > 0 else "–"


def report(raw: Run, farm: Run, args: argparse.Namespace, idle: dict[str, float]) -> None:
    db = "PostgreSQL" if args.db_url and args.db_url.startswith("postgresql") else "SQLite"
    out.print(
        f"[bold]Dispatch overhead[/]: {args.jobs} no-op jobs per side, at most {args.max_running} running at once, "
        f"in {args.rounds} alternating rounds (raw, farm, raw, farm...) on one Ray head\n"
        f"raw Ray is throttled on the client like the farm's dispatcher: at most {args.max_running} unfinished Ray jobs, "
        f"the next submitted as one ends, status polled every {args.poll_s} s on both sides "
        f"(the farm frees a slot at finished_at, before its runner process has exited)\n"
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}; "
        f"Ray head with 8 logical CPUs; farm on {db}\n"
        f"load average (1 min): {idle['load']:.1f} before, {statistics.fmean(raw.loads):.1f} after raw rounds, "
        f"{statistics.fmean(farm.loads):.1f} after farm rounds\n"
        f"interpreter start-up before the head started: python -c pass {_s(idle['pass'])}, "
        f"python -c 'import farm.runner.main' {_s(idle['runner'])}"
    )

    table = Table(title="submit → running / done (p50 · p95), wall time and throughput")
    for col in ("", "raw Ray", "farm", "farm / raw"):
        table.add_column(col, justify="left" if not col else "right")
    rows: list[tuple[str, Callable[[Timeline], float | None], Callable[[Timeline], float | None]]] = [
        ("enqueue → running", lambda j: j.enqueued, lambda j: j.running),
        ("enqueue → done", lambda j: j.enqueued, lambda j: j.done),
        ("dispatch → running", lambda j: j.dispatched, lambda j: j.running),
        ("dispatch → done", lambda j: j.dispatched, lambda j: j.done),
    ]
    for label, start, end in rows:
        for q in (50, 95):
            a, b = percentile(raw.spans(start, end), q), percentile(farm.spans(start, end), q)
            table.add_row(f"{label} p{q}", _s(a), _s(b), _ratio(b, a))
    table.add_row("wall time", _s(raw.wall_s), _s(farm.wall_s), _ratio(farm.wall_s, raw.wall_s))
    table.add_row("throughput", f"{raw.throughput:.2f} jobs/s", f"{farm.throughput:.2f} jobs/s", _ratio(farm.throughput, raw.throughput))
    out.print(table)

    def mark(name: str) -> Callable[[Timeline], float | None]:
        return lambda j: j.marks.get(name)

    phases: list[tuple[Run, str, Callable[[Timeline], float | None], Callable[[Timeline], float | None]]] = [
        (raw, "submit_job call → Ray accepted", lambda j: j.dispatched, mark("ray_accepted")),
        (raw, "Ray accepted → driver's first line", mark("ray_accepted"), lambda j: j.running),
        (raw, "driver's first line → Ray end", lambda j: j.running, lambda j: j.done),
        (farm, "client POST → created_at (API)", lambda j: j.enqueued, mark("created")),
        (farm, "created_at → started_at (queue + claim)", mark("created"), lambda j: j.dispatched),
        (farm, "client POST → started_at", lambda j: j.enqueued, lambda j: j.dispatched),
        (farm, "started_at → Ray accepted", lambda j: j.dispatched, mark("ray_accepted")),
        (farm, "Ray accepted → runner up (start, imports, DB)", mark("ray_accepted"), lambda j: j.running),
        (farm, "runner up → finished_at (pipeline, settle)", lambda j: j.running, lambda j: j.done),
        (farm, "finished_at → Ray end (exit, noticed)", lambda j: j.done, mark("ray_end")),
        (farm, "client POST → finished_at", lambda j: j.enqueued, lambda j: j.done),
    ]
    detail = Table(title="where the time goes (per job)")
    for col in ("", "phase", "p50", "p95", "mean"):
        detail.add_column(col, justify="right" if col in ("p50", "p95", "mean") else "left")
    for run, label, start, end in phases:
        spans = run.spans(start, end)
        mean = statistics.fmean(spans) if spans else float("nan")
        detail.add_row(run.name, label, _s(percentile(spans, 50)), _s(percentile(spans, 95)), _s(mean))
    out.print(detail)
    up_farm = percentile(farm.spans(mark("ray_accepted"), lambda j: j.running), 50)
    up_raw = percentile(raw.spans(mark("ray_accepted"), lambda j: j.running), 50)
    out.print(
        f"runner start-up under load ≈ farm (Ray accepted → runner up) − raw (Ray accepted → driver's first line) "
        f"= {_s(up_farm - up_raw)} at p50; before the head started, importing farm.runner.main took {_s(idle['runner'])}"
    )
    out.print(
        "enqueue: raw = round start (client-side queue), farm = POST; dispatch: raw = submit_job, farm = started_at; "
        "running: the job's own code is executing; done: raw = Ray end_time, farm = finished_at."
    )

    for run in (raw, farm):
        for job in run.failed[:10]:
            out.print(f"[red]{run.name}: job not succeeded: {job.note}")
        if run.failed:
            out.print(f"[red]{run.name}: {len(run.failed)} of {len(run.jobs)} jobs did not succeed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=200, help="jobs per side (default 200)")
    parser.add_argument("--max-running", type=int, default=8, help="jobs running at once, both sides (default 8)")
    parser.add_argument("--rounds", type=int, default=4, help="alternate raw Ray and farm this many times (default 4)")
    parser.add_argument("--poll-s", type=float, default=0.1, help="status poll period of limiter and dispatcher (default 0.1)")
    parser.add_argument("--db-url", help="the farm's database (a PostgreSQL URL); default SQLite in a temp dir")
    parser.add_argument("--timeout-s", type=float, default=1800, help="give up on a farm round after this long")
    args = parser.parse_args(argv)
    sizes = [args.jobs // args.rounds + (1 if r < args.jobs % args.rounds else 0) for r in range(args.rounds)]

    started = time.monotonic()
    err.log("timing interpreter start-up before the Ray head starts")
    idle = {"pass": startup_s("pass"), "runner": startup_s("import farm.runner.main"), "load": os.getloadavg()[0]}
    raw, farm = Run("raw Ray"), Run("farm")
    with LocalRayHead(num_cpus=8) as head, tempfile.TemporaryDirectory(prefix="farm-bench-") as tmp:
        client = job_client(head.dashboard_url)
        warm_up(client)
        side = FarmSide(farm_settings(Path(tmp) / "home", head, args.db_url, args.max_running, args.poll_s), client)
        for r, n in enumerate(sizes, 1):
            raw.add_round(run_raw(client, n, args.max_running, args.poll_s))
            err.log(f"round {r}/{args.rounds}: raw Ray, {n} jobs in {raw.walls[-1]:.1f} s")
            farm.add_round(side.run_round(n, args.timeout_s))
            err.log(f"round {r}/{args.rounds}: farm, {n} jobs in {farm.walls[-1]:.1f} s")
    report(raw, farm, args, idle)
    out.print(f"benchmark took {time.monotonic() - started:.0f} s in all")
    missing = args.jobs - len(farm.jobs)
    if missing:
        out.print(f"[red]farm: {missing} jobs missing from the API's list")
    return 1 if raw.failed or farm.failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
