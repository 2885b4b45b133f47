"""Online serving: dynamic batching, the front door's added latency, LLM throughput. One run.

    .venv/bin/python benchmarks/serving.py [--only batching,latency,llm] [--clients 16] [--images 128] [--steps 4]
                                           [--rounds 5] [--latency-requests 300] [--llm-cells 64x8,64x8s,...,512x32s]
                                           [--llm-pairs 6] [--llm-prompts 16] [--llm-profile-tokens 512] [--no-py-spy]
                                           [--door-nice 0] [--offline]

One local Ray head (8 logical CPUs, token auth), the tiny demo models, and
three Serve applications deployed through the dashboard's REST API exactly as
``farm up`` does (``--only llm``: the LLM application alone):

==================  =====================================================
``tiny-llama``      Ray Serve LLM (vLLM CPU), ``DEMO_LLM_ENGINE_KWARGS``
``tiny-sd-batched`` the diffusion deployment, ``max_batch_size`` 16
``tiny-sd-b1``      the same deployment with ``max_batch_size`` 1
==================  =====================================================

Both diffusion deployments: one replica, 2 CPUs (torch uses both cores),
``max_ongoing_requests`` 64, ``--batch-wait`` (50 ms) to fill a batch; the
batched one pads every pipeline call to 16 images (batch invariance, see
``serve/diffusion/engine.py``), so a half-full batch costs a full one.
The front door is the farm's control plane in its own process, as in
production (uvicorn, SQLite, local object store), on the same machine, with
rate limits off.

1. **Dynamic batching.** ``--clients`` concurrent clients each send
   text-to-image requests (one 64×64 image, ``--steps`` steps, own seed) straight
   to Serve's proxy until ``--images`` images are done; images/s = images /
   wall time. Batched and batch-size-1 alternate for ``--rounds`` rounds after
   a warm-up each; the median round of each is reported, the median of the
   per-round ratios (the two sides of a round run back to back, under about
   the same load from the rest of the machine), and the batch sizes the
   deployment reports per image. Profile: the engine alone, in-process.
2. **Front-door latency.** One client, sequential requests, the same request
   alternately to Serve directly and through the front door (``/v1``, API key,
   rate limiter, usage record). Two requests: a 1-token completion and a
   1-step image (``b64_json``). Added latency = front door percentile − direct
   percentile.
3. **LLM throughput.** Cells: output tokens {64, 512} × concurrent clients
   {8, 32} × {not streamed, streamed} (``--llm-cells``, e.g. ``512x32s``).
   A run: ``/v1/completions`` for ``max(--llm-prompts, clients)`` prompts
   (``ignore_eos``, greedy), each client sending its next prompt when its
   answer is in (streamed: read to ``[DONE]``, tokens from the usage chunk);
   output tokens/s = output tokens / wall time. Per cell: one untimed pass on
   each path (the CPU engine speeds up over its first passes at a new length),
   then ``--llm-pairs`` times an **A/A pair** (Serve direct, then Serve direct
   again: the noise floor of a pair) and a **front door / Serve direct pair**
   (order alternating), each run right after the other. Reported: the median
   within-pair ratio and its range for both, the best run of each side, and
   the target (front/direct ≥ 0.9×). Profile, in the ``--llm-profile-tokens``
   cells: every measured run logs CPU seconds per process (client, front
   door, Serve proxy, LLM ingress, LLM replica, vLLM engine core, vLLM
   worker, rest of Ray), the machine's busy share and run queue, and vLLM's
   own scheduler step count (its ``iteration_tokens`` histogram, exported
   through Ray's metrics agent), so output tokens per step = the sequences
   the engine decoded at once; then one more run per path under py-spy (the
   front door, the LLM replica, the engine core and worker).
   ``--offline``: vLLM's ``LLM.generate`` on the same prompts in a fresh
   process, as the ceiling.

Every figure depends on the machine and what else runs on it: the load
average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report import cpu_model, percentile  # noqa: E402  (benchmarks/, the script's own folder)

BATCHED, B1, LLM = "tiny-sd-batched", "tiny-sd-b1", "tiny-llama"
PROMPTS = [
    "Once upon a time there was a small studio at the edge of a quiet town.",
    "The camera can move slowly or quickly; it can pan to the left or to the right.",
    "Tell me a story about a dragon and a knight.",
    "A painting of a castle on a mountain at sunset, highly detailed, digital art.",
    "What is the weather like today? It is sunny with a few clouds.",
    "Write a short description of each shot, then render a keyframe for it.",
    "The user asks a question and the assistant gives a helpful answer.",
    "Explain how a computer works to a child.",
]
OFFLINE_PREFIX = "OFFLINE_RESULT "


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} CPUs"


# --- 1. dynamic batching ------------------------------------------------------------


async def _images_per_second(url: str, clients: int, images: int, steps: int, round_: int) -> tuple[float, Counter[int], list[float]]:
    import httpx

    counter = iter(range(images))
    batch_sizes: Counter[int] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:

        async def client() -> None:
            for i in counter:
                t0 = time.perf_counter()
                r = await http.post(url, json={"prompt": f"{PROMPTS[i % len(PROMPTS)]} #{round_}-{i}", "steps": steps, "seed": i})
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                batch_sizes[r.json()["data"][0]["batch_size"]] += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - start
    return images / wall, batch_sizes, latencies


def bench_engine(model: Path, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """Profile for (1): the engine alone, in this process, no Serve and no HTTP.

    16 single-image calls vs one call of 16, 3 repetitions, best of each; wall
    clock and this process's CPU time (which contention from other processes
    inflates much less than wall time).
    """
    from serve.diffusion.engine import DiffusersEngine
    from serve.diffusion.protocol import ImageRequest

    engine = DiffusersEngine(str(model), {"num_threads": 2}, max_batch_size=16)
    single = DiffusersEngine(str(model), {"num_threads": 2}, max_batch_size=1)
    asyncio.run(engine.start())
    asyncio.run(single.start())
    jobs = [ImageRequest(prompt=f"{PROMPTS[i % len(PROMPTS)]} {i}", steps=args.steps, seed=i).jobs(engine.defaults)[0] for i in range(16)]
    best: dict[str, tuple[float, float]] = {}
    for _ in range(3):
        for label, calls, eng in (("16 x batch of 1", [[j] for j in jobs], single), ("1 x batch of 16", [jobs], engine)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for call in calls:
                asyncio.run(eng.generate(call))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            prev = best.get(label)
            best[label] = (min(wall, prev[0]), min(cpu, prev[1])) if prev else (wall, cpu)
    return best


def bench_batching(serve_url: str, args: argparse.Namespace) -> dict[str, Any]:
    from serve.config import diffusion_route

    urls = {name: f"{serve_url}{diffusion_route(name)}/generate" for name in (BATCHED, B1)}
    for name, url in urls.items():  # warm-up: first calls pay for lazy init
        asyncio.run(_images_per_second(url, args.clients, args.clients * 2, args.steps, -1))
    rounds: dict[str, list[float]] = {BATCHED: [], B1: []}
    sizes: dict[str, Counter[int]] = {BATCHED: Counter(), B1: Counter()}
    latency: dict[str, list[float]] = {BATCHED: [], B1: []}
    for r in range(args.rounds):
        for name in (B1, BATCHED) if r % 2 == 0 else (BATCHED, B1):
            rate, batch_sizes, lat = asyncio.run(_images_per_second(urls[name], args.clients, args.images, args.steps, r))
            rounds[name].append(rate)
            sizes[name] += batch_sizes
            latency[name] += lat
    return {"rounds": rounds, "sizes": sizes, "latency": latency}


# --- 2. front-door latency --------------------------------------------------------------


def bench_front_door(serve_url: str, door_url: str, key: str, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    import httpx

    from serve.config import diffusion_route

    cases = {
        "completion, 1 token": (
            (f"{serve_url}/llm/v1/completions", {}),
            (f"{door_url}/v1/completions", {"Authorization": f"Bearer {key}"}),
            {"model": LLM, "prompt": PROMPTS[0], "max_tokens": 1, "temperature": 0},
            None,
        ),
        "image, 1 step, b64_json": (
            (f"{serve_url}{diffusion_route(B1)}/generate", {}),
            (f"{door_url}/v1/images/generations", {"Authorization": f"Bearer {key}"}),
            {"prompt": PROMPTS[3], "steps": 1, "seed": 1},
            {"model": B1, "prompt": PROMPTS[3], "response_format": "b64_json", "steps": 1, "seed": 1},
        ),
    }
    out: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(timeout=120) as http:
        for name, ((direct_url, direct_h), (door, door_h), body, door_body) in cases.items():
            times: dict[str, list[float]] = {"direct": [], "front door": [], "in the front door": []}
            for i in range(args.latency_requests + 20):
                order = [("direct", direct_url, direct_h, body), ("front door", door, door_h, door_body or body)]
                for label, url, headers, payload in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    r = http.post(url, json=payload, headers=headers)
                    elapsed = time.perf_counter() - t0
                    r.raise_for_status()
                    if i >= 20:  # warm-up
                        times[label].append(elapsed)
                        if label == "front door":  # its own time, apart from waiting on Serve
                            farm_ms = r.headers["server-timing"].split("farm;dur=")[1].split(",")[0]
                            times["in the front door"].append(float(farm_ms) / 1000)
            out[name] = times
    return out


# --- 3. LLM throughput ----------------------------------------------------------------------


def _prompts(n: int) -> list[str]:
    return [f"{PROMPTS[i % len(PROMPTS)]} ({i})" for i in range(n)]


def _cells(spec: str) -> list[tuple[int, int, bool]]:
    """``64x8,512x32s`` → (tokens, clients, streamed) per cell; ``s`` marks a streamed cell."""
    cells = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        streamed = item.endswith("s")
        tokens, clients = item.removesuffix("s").split("x")
        cells.append((int(tokens), int(clients), streamed))
    return cells


def _cell_name(cell: tuple[int, int, bool]) -> str:
    tokens, clients, streamed = cell
    return f"{tokens}x{clients}{'s' if streamed else ''}"


class RunFailed(RuntimeError):
    """A request of a run was answered with an error."""


async def _llm_tokens(base_url: str, key: str, prompts: list[str], tokens: int, concurrency: int, streamed: bool) -> tuple[int, float]:
    """Output tokens and wall seconds for every prompt, ``concurrency`` clients at a time.

    Plain httpx on both paths (no SDK objects per chunk, so the client costs
    both paths the same little CPU). Streamed: the client reads every event
    and counts the chunks that carry text; the final usage chunk must agree.
    """
    import httpx

    queue = iter(prompts)
    produced = 0
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits, headers=headers) as http:

        async def worker() -> None:
            nonlocal produced
            for prompt in queue:
                body: dict[str, Any] = {"model": LLM, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}
                if not streamed:
                    r = await http.post(f"{base_url}/completions", json=body)
                    if r.status_code != 200:
                        raise RunFailed(f"{r.status_code} from {base_url}: {r.text[:300]}")
                    produced += r.json()["usage"]["completion_tokens"]
                    continue
                body |= {"stream": True, "stream_options": {"include_usage": True}}
                chunks, usage = 0, None
                async with http.stream("POST", f"{base_url}/completions", json=body) as r:
                    if r.status_code != 200:
                        raise RunFailed(f"{r.status_code} from {base_url}: {(await r.aread())[:300].decode(errors='replace')}")
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        if '"usage":{' in line:
                            usage = json.loads(line[6:])["usage"]["completion_tokens"]
                        if '"text":"' in line and '"text":""' not in line:
                            chunks += 1
                if usage is None:
                    raise RuntimeError("a stream ended without its usage chunk")
                produced += usage

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return produced, wall


# What runs where, by process title: the front door, and the Serve and vLLM processes on its path.
PROCESS_GROUPS = (
    ("client", lambda c: False),  # this process, by pid
    ("front door", lambda c: False),  # by pid
    ("Serve proxy", lambda c: "ProxyActor" in c),
    ("LLM ingress", lambda c: "ServeReplica:llm:" in c and "LLMServer" not in c),
    ("LLM replica", lambda c: "ServeReplica:llm:LLMServer" in c),
    ("vLLM engine core", lambda c: "EngineCore" in c),
    ("vLLM worker", lambda c: "VLLM::Worker" in c),
    ("rest of Ray", lambda c: True),
)


class CpuMeter:
    """CPU seconds per process group between two points, and the machine's busy share and run queue meanwhile."""

    def __init__(self, roots: list[int], door_pid: int) -> None:
        import psutil

        self.door_pid = door_pid
        self.procs: dict[int, tuple[str, Any]] = {}
        for root in roots:
            try:
                top = psutil.Process(root)
                family = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in family:
                try:
                    title = " ".join(proc.cmdline()) or proc.name()
                except psutil.Error:
                    continue
                group = "front door" if proc.pid == door_pid else next(g for g, match in PROCESS_GROUPS[2:] if match(title))
                self.procs[proc.pid] = (group, proc)
        self.procs[os.getpid()] = ("client", psutil.Process())
        self._samples: list[int] = []
        self._stop = False
        self._thread: Any = None

    def pids(self, group: str) -> list[int]:
        return [pid for pid, (g, _) in self.procs.items() if g == group]

    def _cpu(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = dict.fromkeys((g for g, _ in PROCESS_GROUPS), 0.0)
        for group, proc in self.procs.values():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            out[group] += t.user + t.system
        return out

    @staticmethod
    def _stat() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _sample(self) -> None:
        while not self._stop:  # runnable threads, machine-wide (includes this sampler: 1)
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running"):
                    self._samples.append(int(line.split()[1]))
            time.sleep(0.05)

    def __enter__(self) -> CpuMeter:
        import threading

        self._samples, self._stop = [], False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.before, self.stat_before = self._cpu(), self._stat()
        return self

    def __exit__(self, *exc: object) -> None:
        after, stat = self._cpu(), self._stat()
        self._stop = True
        self._thread.join()
        self.seconds = {g: after[g] - self.before[g] for g in after}
        busy, total = stat[0] - self.stat_before[0], stat[1] - self.stat_before[1]
        self.busy = busy / total if total else float("nan")
        self.run_queue = statistics.mean(self._samples) if self._samples else float("nan")


class EngineSteps:
    """vLLM's scheduler steps from its metrics (Ray Serve LLM exports them through the node's metrics agent).

    Output tokens / steps = the mean number of sequences the engine decoded at
    once. The replica exports every ``RAY_metrics_report_interval_ms`` (1 s
    here), so a reading waits that long after a run.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def read(self) -> float | None:
        import httpx

        try:
            text = httpx.get(self.url, timeout=5).text
        except httpx.HTTPError:
            return None
        total = 0.0  # no line before the engine's first step
        for line in text.splitlines():
            if line.startswith("ray_vllm_iteration_tokens_total_count") or line.startswith("vllm_iteration_tokens_total_count"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def _py_spy(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# Leaves of a thread that waits (py-spy without pausing the process samples these too); a spin (sched_yield) stays.
WAITING = ("Condition.wait", "Event.wait", "Queue.get", "select (", ".select (", "_worker (concurrent", "sleep (")


def _top_frames(raw: Path, n: int = 8) -> list[tuple[str, float]]:
    """Share of the busy samples per leaf frame (own time) from py-spy's collapsed stacks."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if any(w in leaf for w in WAITING):
            continue
        counts[leaf] += int(count)
        total += int(count)
    return [(frame, c / total) for frame, c in counts.most_common(n)] if total else []


def _profiled_run(side: str, base: str, key: str, prompts: list[str], cell: tuple[int, int, bool], meter: CpuMeter,
                  work: Path, rate: int) -> dict[str, Any]:
    """One extra run with py-spy on the front door (its path only), the LLM replica and the engine core."""
    tokens, clients, streamed = cell
    targets = {g: meter.pids(g) for g in ("LLM replica", "vLLM engine core", "vLLM worker")}
    if side == "front door":
        targets["front door"] = [meter.door_pid]
    spies = {}
    for group, pids in targets.items():
        if pids:
            out = work / f"pyspy-{_cell_name(cell)}-{side.replace(' ', '_')}-{group.replace(' ', '_')}.txt"
            spies[group] = (out, _py_spy(pids[0], out, rate))
    time.sleep(1.0)  # py-spy attached
    try:
        produced, wall = asyncio.run(_llm_tokens(base, key, prompts, tokens, clients, streamed))
    except RunFailed as exc:  # the profile is an extra: say so and go on
        print(f"   (the py-spy run on the {side} path failed: {exc})", flush=True)
        produced, wall = 0, 1.0
    frames: dict[str, list[tuple[str, float]]] = {}
    for group, (out, spy) in spies.items():
        spy.send_signal(2)  # SIGINT: py-spy writes what it has
        _, err = spy.communicate(timeout=60)
        frames[group] = _top_frames(out) if out.exists() else [(f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}", 0.0)]
    return {"tokens/s": produced / wall, "frames": frames}


def _retried(run: Any, side: str, cell: tuple[int, int, bool], failures: list[str]) -> tuple[int, float]:
    """A failed run is said, and run once more; a second failure ends the benchmark."""
    for attempt in range(2):
        try:
            return asyncio.run(run())
        except RunFailed as exc:
            failures.append(f"{side}: {exc}")
            print(f"   ({_cell_name(cell)}: a {side} run failed: {exc}; {'running it again' if attempt == 0 else 'stopping'})", flush=True)
            if attempt:
                raise
            time.sleep(2)
    raise AssertionError


def bench_llm(serve_url: str, door_url: str, key: str, meter: CpuMeter, steps: EngineSteps | None, work: Path,
              args: argparse.Namespace) -> dict[str, Any]:
    """Per cell: A/A pairs (Serve direct twice) and front door / Serve direct pairs, each pair back to back, order alternating.

    Every run: output tokens/s, CPU seconds per process group, the machine's
    busy share and run queue; in profile cells also the engine's mean
    sequences per step, and one extra py-spy run per side.
    """
    door_base, serve_base = f"{door_url}/v1", f"{serve_url}/llm/v1"
    sides = {"front door": (door_base, key), "Serve direct": (serve_base, "unused")}
    results: dict[str, Any] = {}
    for cell in _cells(args.llm_cells):
        tokens, clients, streamed = cell
        profile = tokens in args.llm_profile_tokens
        prompts = _prompts(max(args.llm_prompts, clients))
        # The CPU engine gets faster over its first passes at a new length (it meets new sequence
        # lengths and batch shapes): one untimed pass of every prompt on each path first.
        runs: list[dict[str, Any]] = []
        failures: list[str] = []
        for side in sides:
            _retried(lambda: _llm_tokens(*sides[side], prompts, tokens, clients, streamed), side, cell, failures)

        def run(side: str, pair: str, index: int) -> dict[str, Any]:
            base, api_key = sides[side]
            before = steps.read() if (profile and steps) else None
            async def measured() -> tuple[int, float]:
                with meter:
                    return await _llm_tokens(base, api_key, prompts, tokens, clients, streamed)

            produced, wall = _retried(measured, side, cell, failures)
            record = {"side": side, "pair": pair, "index": index, "tokens": produced, "wall": wall, "cpu": meter.seconds,
                      "busy": meter.busy, "run_queue": meter.run_queue}
            if before is not None:
                time.sleep(2.2)  # the replica exports its metrics every second
                after = steps.read()
                record["steps"] = after - before if after is not None else None
            runs.append(record)
            return record

        aa, fd = [], []
        for i in range(args.llm_pairs):  # A/A then front/direct, alternating order within each
            a, b = run("Serve direct", "A/A", 2 * i), run("Serve direct", "A/A", 2 * i + 1)
            first, second = (a, b) if i % 2 == 0 else (b, a)
            aa.append((first["tokens"] / first["wall"]) / (second["tokens"] / second["wall"]))
            order = ("front door", "Serve direct") if i % 2 == 0 else ("Serve direct", "front door")
            pair = {side: run(side, "F/D", i) for side in order}
            fd.append((pair["front door"]["tokens"] / pair["front door"]["wall"])
                      / (pair["Serve direct"]["tokens"] / pair["Serve direct"]["wall"]))
        profiled = {}
        if profile and args.llm_py_spy:
            for side, (base, api_key) in sides.items():
                profiled[side] = _profiled_run(side, base, api_key, prompts, cell, meter, work, args.py_spy_rate)
        results[_cell_name(cell)] = {"cell": cell, "prompts": len(prompts), "aa": aa, "fd": fd, "runs": runs, "profiled": profiled,
                                      "failures": failures}
        _report_cell(results[_cell_name(cell)])
        report_profile({_cell_name(cell): results[_cell_name(cell)]})
        (work / "llm-runs.json").write_text(json.dumps(results, indent=1, default=str))  # every run, for a closer look
    return results


def _report_cell(res: dict[str, Any]) -> None:
    """One cell's figures, printed as soon as it is done (a partial run still says something)."""
    tokens, clients, streamed = res["cell"]
    fd_runs = [r for r in res["runs"] if r["pair"] == "F/D"]
    best = {side: max(r["tokens"] / r["wall"] for r in fd_runs if r["side"] == side) for side in ("front door", "Serve direct")}
    aa, fd = sorted(res["aa"]), sorted(res["fd"])
    verdict = "met" if statistics.median(fd) >= 0.9 else "MISSED"
    print(f"   {tokens:3d} tokens, {clients:2d} clients, {'streamed    ' if streamed else 'not streamed'}  "
          f"A/A {statistics.median(aa):.2f}x ({aa[0]:.2f}-{aa[-1]:.2f})   front/direct {statistics.median(fd):.2f}x "
          f"({fd[0]:.2f}-{fd[-1]:.2f})   best {best['front door']:,.0f} vs {best['Serve direct']:,.0f} tok/s   "
          f"target >= 0.9x: {verdict}", flush=True)
    for failure in res["failures"]:
        print(f"      a run failed and was run again: {failure}")


def report_profile(results: dict[str, Any]) -> None:
    """Per profile cell and path: CPU-s per 1k output tokens per process group, machine busy share, run queue, sequences per step."""
    for name, res in results.items():
        runs = [r for r in res["runs"] if r["pair"] == "F/D"]
        if not any("steps" in r for r in runs) and not res["profiled"]:
            continue
        tokens, clients, streamed = res["cell"]
        print(f"   profile {tokens} tokens, {clients} clients, {'streamed' if streamed else 'not streamed'}"
              f" ({len(runs) // 2} runs per path; medians)")
        groups = [g for g, _ in PROCESS_GROUPS]
        print("      path           tok/s  " + "  ".join(f"{g[:12]:>12}" for g in groups) + "  busy  runq  seqs/step")
        for side in ("front door", "Serve direct"):
            mine = [r for r in runs if r["side"] == side]
            per_k = {g: statistics.median(r["cpu"][g] / r["tokens"] * 1000 for r in mine) for g in groups}
            seqs = [r["tokens"] / r["steps"] for r in mine if r.get("steps")]
            print(f"      {side:12} {statistics.median(r['tokens'] / r['wall'] for r in mine):7,.0f}  "
                  + "  ".join(f"{per_k[g]:12.3f}" for g in groups)
                  + f"  {statistics.median(r['busy'] for r in mine):4.0%}  {statistics.median(r['run_queue'] for r in mine):4.1f}"
                  + (f"  {statistics.median(seqs):9.2f}" if seqs else "          -"))
        print("      (CPU-seconds per 1,000 output tokens; busy: the machine's CPU busy share; runq: runnable threads, mean)")
        for side, prof in res["profiled"].items():
            print(f"      py-spy, {side} run ({prof['tokens/s']:,.0f} tok/s), top frames by own time:")
            for group, frames in prof["frames"].items():
                shown = "; ".join(f"{f.split(' (')[0]} {share:.0%}" for f, share in frames[:5])
                print(f"         {group}: {shown}")


def offline_worker(model: str, prompts_json: str, lengths_json: str) -> None:
    """Runs in its own process: vLLM offline on the same prompts, same engine arguments."""
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM as VLLM
    from vllm import SamplingParams

    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    prompts = json.loads(prompts_json)
    llm = VLLM(model=model, seed=0, **DEMO_LLM_ENGINE_KWARGS)
    results = {}
    for tokens in json.loads(lengths_json):
        params = SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0)
        llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up, like the served engine's first requests
        best = None
        for _ in range(2):
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            wall = time.perf_counter() - start
            produced = sum(len(o.outputs[0].token_ids) for o in outputs)
            best = (produced, wall) if best is None or produced / wall > best[0] / best[1] else best
        results[tokens] = best
    print(OFFLINE_PREFIX + json.dumps(results), flush=True)


def bench_offline(model_path: Path, args: argparse.Namespace) -> dict[int, tuple[int, float]]:
    """The ceiling: vLLM's ``LLM.generate`` on ``--llm-prompts`` prompts in a fresh process, after Serve is gone."""
    lengths = sorted({tokens for tokens, _, _ in _cells(args.llm_cells)})
    proc = subprocess.run(
        [sys.executable, __file__, "--offline-worker", str(model_path), json.dumps(_prompts(args.llm_prompts)), json.dumps(lengths)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith(OFFLINE_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"offline vLLM failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {int(t): (p, w) for t, (p, w) in json.loads(lines[-1].removeprefix(OFFLINE_PREFIX)).items()}


# --- setup and report -----------------------------------------------------------------------

# The front door runs as it does in production: its own process, uvicorn, settings from FARM_*.
FRONT_DOOR = """
import uvicorn
from farm.api import create_app
from farm.settings import Settings
s = Settings()
uvicorn.run(create_app(s), host=s.api.host, port=s.api.port, log_level="warning")
"""


def _start_front_door(settings: Any, cwd: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    import httpx

    from farm.runner_env import settings_env

    proc = subprocess.Popen([sys.executable, "-c", FRONT_DOOR], env={**os.environ, **settings_env(settings)}, cwd=cwd,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the front door exited with {proc.returncode}")
        try:
            if httpx.get(f"{settings.base_url}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the front door did not start")



def _registry(models: dict[str, Path], batch_wait: float, phases: set[str]) -> list[dict[str, Any]]:
    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    sd = {"kind": "diffusion", "source": str(models["tiny-sd"]), "cpus": 2, "max_ongoing_requests": 64,
          "max_queued_requests": 256, "batch_wait_timeout_s": batch_wait}
    registry = [{"name": LLM, "kind": "llm", "source": str(models["tiny-llama"]), "engine_kwargs": dict(DEMO_LLM_ENGINE_KWARGS), "cpus": 1}]
    if phases & {"batching", "latency"}:  # the LLM phase alone runs beside no idle diffusion replicas
        registry += [{"name": BATCHED, **sd, "max_batch_size": 16}, {"name": B1, **sd, "max_batch_size": 1}]
    return registry


PHASES = ("batching", "latency", "llm")
ALL_CELLS = ",".join(f"{t}x{c}{s}" for t in (64, 512) for c in (8, 32) for s in ("", "s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PHASES), help=f"phases to run, of {','.join(PHASES)}")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--images", type=int, default=128, help="images per measured round")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-wait", type=float, default=0.05, help="batch_wait_timeout_s of the diffusion deployments")
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--llm-cells", default=ALL_CELLS, help="TOKENSxCLIENTS[s] (s: streamed), comma-separated")
    parser.add_argument("--llm-pairs", type=int, default=6, help="A/A pairs and front door / direct pairs per cell")
    parser.add_argument("--llm-prompts", type=int, default=16, help="prompts per run (at least one per client)")
    parser.add_argument("--llm-profile-tokens", type=lambda v: {int(x) for x in v.split(",") if x}, default={512},
                        help="output lengths whose cells are profiled (CPU per process, engine steps, py-spy)")
    parser.add_argument("--no-py-spy", dest="llm_py_spy", action="store_false", help="no extra py-spy runs in profile cells")
    parser.add_argument("--py-spy-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--door-nice", type=int, default=0,
                        help="niceness of the front door's process (Ray runs its workers at 15; the front door and clients run at 0)")
    parser.add_argument("--door-connect-timeout", type=float, default=10,
                        help="the front door's FARM_SERVE__CONNECT_TIMEOUT_S (default 2 s: a burst of 32 new connections to a "
                             "proxy starved on two cores overran it)")
    parser.add_argument("--offline", action="store_true", help="also vLLM's offline LLM.generate at each length")
    args = parser.parse_args()
    phases = {p for p in args.only.split(",") if p}
    if phases - set(PHASES):
        parser.error(f"unknown phase(s): {', '.join(sorted(phases - set(PHASES)))}")

    import yaml

    from cluster.local import LocalRayHead
    from farm.accounts import create_org, issue_key
    from farm.db import Database, Role
    from farm.settings import Settings
    from serve.config import serve_config, serve_url
    from serve.demo_models import build_demo_models
    from serve.deploy import deploy, wait_running
    from serve.registry import ModelRegistry

    print(f"StoryCore Farm serving benchmark — {cpu_model()}, {_load()}; front door at nice {args.door_nice}")
    models = build_demo_models(REPO / ".farm" / "test-models")
    engine = bench_engine(models["tiny-sd"], args) if "batching" in phases else None
    work = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    registry_file = work / "models.yaml"
    registry_file.write_text(yaml.safe_dump({"models": _registry(models, args.batch_wait, phases)}))
    config = serve_config(ModelRegistry.from_yaml(registry_file), port=_free_port(), ingress_cpus=0.5)
    metrics_port = _free_port()
    os.environ["RAY_metrics_report_interval_ms"] = "1000"  # vLLM's step counter, readable a second after a run
    batching = latency = llm = None
    with LocalRayHead(num_cpus=8, extra_args=["--metrics-export-port", str(metrics_port)]) as head:
        t0 = time.perf_counter()
        deploy(head.dashboard_url, config)
        wait_running(head.dashboard_url, [a["name"] for a in config["applications"]], timeout=900)
        print(f"Serve applications running after {time.perf_counter() - t0:.0f}s")
        settings = Settings(home=work / "home", api={"port": _free_port()}, models={"registry_file": registry_file},
                            dispatch={"enabled": False},
                            serve={"url": serve_url(config), "rate_limit_rps": 0, "connect_timeout_s": args.door_connect_timeout})
        settings.home.mkdir(parents=True)
        db = Database(settings.db.url)
        db.upgrade()
        with db.session() as s:
            org = create_org(s, "bench")
            _, key = issue_key(s, org.id, "bench", Role.member)
            s.commit()
        db.dispose()
        door = _start_front_door(settings, work, args.door_nice)
        try:
            if "batching" in phases:
                batching = bench_batching(serve_url(config), args)
            if "latency" in phases:
                latency = bench_front_door(serve_url(config), settings.base_url, key, args)
            if "llm" in phases:
                print(f"\n3. LLM output tokens/s, front door vs Serve direct: {args.llm_pairs} A/A pairs (Serve direct twice) and "
                      f"{args.llm_pairs} front/direct pairs per cell, order alternating; ratio = first / second of a pair")
                assert head.pid is not None
                meter = CpuMeter([head.pid, door.pid], door.pid)
                steps = EngineSteps(f"http://127.0.0.1:{metrics_port}/metrics")
                print(f"   (every run, with its CPU seconds per process: {work / 'llm-runs.json'})")
                llm = bench_llm(serve_url(config), settings.base_url, key, meter, steps, work, args)
        finally:
            door.terminate()
            door.wait(30)
    offline = bench_offline(models["tiny-llama"], args) if "llm" in phases and args.offline else None
    report(args, engine, batching, latency, llm, offline)
    print(_load())


def report(args: argparse.Namespace, engine: dict[str, tuple[float, float]] | None, batching: dict[str, Any] | None,
           latency: dict[str, dict[str, list[float]]] | None, llm: dict[str, Any] | None,
           offline: dict[int, tuple[int, float]] | None) -> None:
    if batching is not None and engine is not None:
        print()
        print(f"1. Dynamic batching: {args.clients} concurrent clients, 64x64, {args.steps} steps, {args.images} images/round, "
              f"median of {args.rounds} rounds")
        med = {name: statistics.median(r) for name, r in batching["rounds"].items()}
        for name, label in ((B1, "batch size 1 "), (BATCHED, "batching (16)")):
            rounds = ", ".join(f"{x:.1f}" for x in batching["rounds"][name])
            sizes = batching["sizes"][name]
            mean_batch = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
            lat = batching["latency"][name]
            print(f"   {label}  {med[name]:6.1f} images/s  (rounds {rounds}; mean batch {mean_batch:.1f}; "
                  f"request p50 {percentile(lat, 50) * 1000:.0f} ms, p95 {percentile(lat, 95) * 1000:.0f} ms)")
        paired = [b / a for a, b in zip(batching["rounds"][B1], batching["rounds"][BATCHED])]
        print(f"   ratio          {med[BATCHED] / med[B1]:6.2f}x   (target >= 3x; median images/s over median images/s)")
        print(f"   paired ratio   {statistics.median(paired):6.2f}x   (median of per-round ratios {', '.join(f'{x:.2f}' for x in paired)};"
              f" the two sides of a round run back to back)")
        print("   profile: the engine alone, in-process, 16 images, best of 3")
        for label, (wall, cpu) in engine.items():
            print(f"      {label}   {16 / wall:6.1f} images/s wall   {16 / cpu:6.1f} images per CPU-second")
        (w1, c1), (w16, c16) = engine["16 x batch of 1"], engine["1 x batch of 16"]
        print(f"      ratio             {w1 / w16:6.2f}x wall         {c1 / c16:6.2f}x CPU")
    if latency is not None:
        print()
        print(f"2. Front-door latency: sequential, {args.latency_requests} requests each way, interleaved")
        for case, times in latency.items():
            d, f = times["direct"], times["front door"]
            print(f"   {case}")
            print(f"      Serve direct   p50 {percentile(d, 50) * 1000:7.2f} ms   p95 {percentile(d, 95) * 1000:7.2f} ms")
            print(f"      front door     p50 {percentile(f, 50) * 1000:7.2f} ms   p95 {percentile(f, 95) * 1000:7.2f} ms")
            print(f"      added          p50 {(percentile(f, 50) - percentile(d, 50)) * 1000:7.2f} ms   p95 {(percentile(f, 95) - percentile(d, 95)) * 1000:7.2f} ms"
                  f"   (target p50 <= 5 ms)")
            inside = times["in the front door"]
            print(f"      profile: in the front door's handler (Server-Timing), p50 {percentile(inside, 50) * 1000:.2f} ms"
                  f"   p95 {percentile(inside, 95) * 1000:.2f} ms; the rest is the extra HTTP hop")
    if llm is not None:
        print()
        print(f"3. LLM output tokens/s: ignore_eos, greedy, {args.llm_prompts} prompts a run (at least one per client); "
              f"median within-pair ratio (range); target: front/direct >= 0.9x")
        for res in llm.values():
            _report_cell(res)
        report_profile(llm)
    if offline is not None:
        print("   vLLM offline LLM.generate, same engine arguments, one call of every prompt: "
              + ", ".join(f"{t} tokens {p / w:,.0f} tok/s" for t, (p, w) in offline.items()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--offline-worker":
        offline_worker(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
