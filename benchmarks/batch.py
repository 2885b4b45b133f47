"""Batch inference: `batch.chat` vs. bare vLLM and Hugging Face generate, `batch.images` vs. the diffusion engine alone.

    .venv/bin/python benchmarks/batch.py [--requests 1000] [--big 20000] [--max-tokens 16] [--hf-batch 256] [--images 256]

A quick look at both figures: ``--requests 200 --big 0 --images 128`` (a few
minutes on two cores); ``--requests 0`` runs the images figure alone.

One run, the same chat prompts and the tiny demo model (``tiny-llama``,
built by ``serve.demo_models`` into ``.farm/test-models`` or
``$FARM_TEST_MODEL_CACHE``) on every side:

farm
    A ``LocalRayHead(num_cpus=8)`` and an embedded control plane (API +
    dispatcher, SQLite in a temp dir) whose model registry names the model
    with the registry's ``DEMO_LLM_ENGINE_KWARGS``. The official ``openai``
    client uploads an OpenAI batch input file (``files.create``), creates the
    batch and polls ``batches.retrieve`` every 0.25 s until it is terminal.
    Tokens are the sum of ``usage.completion_tokens`` in the output file.
    The runner (``python -m farm.runner``, the Ray Job's driver) validates
    the file, runs it through the LLM stage (``ray.data.llm``: chat template,
    a vLLM engine actor that tokenizes and detokenizes), writes part files,
    then merges them.
vLLM
    ``vllm.LLM(model, **DEMO_LLM_ENGINE_KWARGS)`` in a subprocess (vLLM spawns
    its engine core), then ``generate`` on the N prompts, then on the big
    batch's prompts with the same engine. Prompts are rendered as
    ``ray.data.llm``'s chat template stage renders them (the tokenizer's chat
    template, ``tokenize=False``, ``add_generation_prompt=True``) and passed
    as text, so vLLM tokenizes them inside ``generate`` exactly as it does
    inside the farm's engine actor: ``tokenizer(prompt)``, which adds a second
    BOS after the template's own (the prompt token totals printed for both
    sides show they match). Rendering the template stays outside the timer,
    which favours vLLM slightly.
Hugging Face
    ``AutoModelForCausalLM.generate`` in a subprocess on the same token ids,
    greedy, in left-padded batches of ``--hf-batch`` prompts sorted by length
    (N prompts only: the big batch would take too long).

Sampling is the same everywhere: greedy (temperature 0) and ``max_tokens``.
The farm does not forward ``ignore_eos`` (``pipelines/batch_chat.py``
``sampling_params()`` passes temperature, top_p, seed, stop, penalties and
max_tokens only), so no side sets it: each side counts the tokens it actually
generated (a request stops early only if the model emits EOS), and the table
shows how many requests ran to ``max_tokens``.

Three spans per side, so engine start-up and steady state are both visible:

==============  =======================================  ==================================
span            farm                                     vLLM / HF (subprocess)
==============  =======================================  ==================================
end to end      batch ``created_at`` -> job              process spawned -> generate
                ``finished_at`` (= ``completed_at``,     returned (imports, tokenizer,
                from the database at full precision)     engine/model start, generation)
in the runner   ``in_progress_at`` -> ``finalizing_at``  engine/model construction +
                (Ray Data start, vLLM engine actor       generate (no imports)
                start-up, generation, part writes)
steady state    vLLM engine actor ready -> last item     generate only
                recorded (all tokens)
==============  =======================================  ==================================

The farm's engine is ready when the Ray Data actor holding it finishes its
constructor: Ray titles the actor's process ``...vLLMEngineStageUDF).__init__``
until then, and the CPU sampler below notes when that suffix goes (±0.25 s).
The farm's steady state starts there rather than at the first item recorded
(the runner writes a part file, then records its items, every 256 lines or
1 s), because results reach the driver in a few large Ray Data output
blocks: on a big batch nothing arrives for a long while after the engine
starts generating. For the big batch, vLLM's end to end and in the runner
times are derived: its start-up (spawn -> engine ready) plus the big
``generate``.

The ``--big`` batch (the same prompts, cycled) also checks that the
runner's memory stays flat as the input file grows: a thread finds the
runner's pid (``Job.runner_pid``, checked against its command line) and
samples its RSS with psutil every 0.1 s. Only the driver process is sampled,
not its children: the vLLM engine and the other Ray Data stages run in Ray
actors (children of the raylet), so the driver's memory is what would scale
with the file. Another thread adds up CPU-seconds by process group (every
process the Ray head or the vLLM subprocess started, this process, and the
machine's total) every 0.25 s, to show where the cores went.

The sides run in the order vLLM, farm (N), HF, farm (big), all while the
Ray head and the idle control plane are up, and the 1-minute load average is
printed before and after each, as a hint of how busy the machine was.

The images figure (``--images N``) sends N image requests (``tiny-sd``,
64x64, 4 steps, one image each, seeds 0..N-1) to both sides:

farm
    an OpenAI batch of ``/v1/images/generations`` lines through the same
    embedded farm: the runner renders them with the diffusion stage (the
    engine in a Ray Data actor pool, compatible requests batched) and records
    every PNG as an asset of the batch's project.
diffusion engine
    ``DiffusersEngine.from_spec`` of the same registry entry (what a Serve
    replica and the farm's stage hold) in a subprocess, rendering the same
    requests in calls of ``max_batch_size`` images, PNG bytes returned and
    nothing stored. It gets the threads Ray gives one of the farm's actors
    (``OMP_NUM_THREADS`` = the entry's ``cpus``): torch's default of a
    thread per core crawls on a busy machine.

Spans as above: end to end (batch created -> job finished; process spawned
-> last image), in the runner (``in_progress_at`` -> ``finalizing_at``;
engine construction + rendering) and steady state (first -> last items
recorded; rendering only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the farm importable
    sys.path.insert(0, str(REPO))

MODEL = "tiny-llama"
IMAGE_MODEL = "tiny-sd"
IMAGE_SIZE, IMAGE_STEPS = 64, 4
RUNNER = "farm.runner"  # the Ray Job driver's module, as its command line names it
POLL_S = 0.25
RSS_PERIOD_S = 0.1
CPU_PERIOD_S = 0.25
TERMINAL = {"completed", "failed", "cancelled", "expired"}
WORDS = (
    "a quiet studio at the edge of town the artists draw people animals houses trees the sea the sky "
    "a girl builds wings from paper and wood and climbs the highest hill the wind takes her over the river "
    "the camera pans to the left zooms in on a face pulls back to show the whole landscape warm light cold light"
).split()


def prompt_texts(n: int) -> list[str]:
    """N different user messages of 4 to 40 words, the same on every run."""
    texts = []
    for i in range(n):
        length = 4 + (i * 7) % 37
        words = [WORDS[(i * 13 + k * 5) % len(WORDS)] for k in range(length)]
        texts.append(f"Shot {i}: describe " + " ".join(words))
    return texts


def cycled(texts: list[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def model_paths() -> dict[str, Path]:
    from serve.demo_models import build_demo_models

    cache = Path(os.environ.get("FARM_TEST_MODEL_CACHE") or REPO / ".farm" / "test-models")
    return build_demo_models(cache)


def image_bodies(n: int) -> list[dict[str, Any]]:
    """N image requests (OpenAI ``/v1/images/generations`` bodies), the same on every run."""
    return [{"model": IMAGE_MODEL, "prompt": f"storyboard frame {i}: " + " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(8)),
             "size": f"{IMAGE_SIZE}x{IMAGE_SIZE}", "n": 1, "seed": i, "steps": IMAGE_STEPS} for i in range(n)]


def render(tokenizer: Any, texts: list[str]) -> list[str]:
    """Prompts as ray.data.llm's ChatTemplate stage renders them: the template applied, not yet tokenized."""
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True) for t in texts]


def token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids as vLLM makes them from a rendered prompt (``tokenizer(prompt)``, which adds a second BOS)."""
    return [list(ids) for ids in tokenizer(render(tokenizer, texts))["input_ids"]]


# --- the subprocess peers ----------------------------------------------------------------


# A process that keeps `duty` of one core busy in 10 ms periods; the marker names it in the CPU table.
HOG = "# co-load\nimport sys, time\nd = float(sys.argv[1])\nwhile True:\n t = time.perf_counter()\n while time.perf_counter() - t < d / 100: pass\n time.sleep((1 - d) / 100)\n"


def co_load(cores: float) -> list[subprocess.Popen[bytes]]:
    """Busy processes that use `cores` CPU-seconds per second between them, as the farm's own processes do."""
    hogs = []
    while cores > 0.01:
        duty = min(cores, 1.0)
        hogs.append(subprocess.Popen([sys.executable, "-c", HOG, f"{duty:.3f}"]))
        cores -= duty
    return hogs


def worker_vllm(model: str, texts: list[str], max_tokens: int, big: int, load: float = 0.0) -> dict[str, Any]:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    # Text prompts: vLLM tokenizes inside generate, as it does inside the farm's engine
    # actor, so tokenizing is timed on both sides.
    prompts = render(AutoTokenizer.from_pretrained(model), texts)
    r: dict[str, Any] = {"imported": time.time()}
    llm = LLM(model=model, **DEMO_LLM_ENGINE_KWARGS)
    r["engine_ready"] = time.time()
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    outs = llm.generate(prompts, params, use_tqdm=False)
    r["done"] = time.time()
    r["counts"] = [len(o.outputs[0].token_ids) for o in outs]
    r["prompt_tokens"] = sum(len(o.prompt_token_ids or ()) for o in outs)
    if big:
        hogs = co_load(load)
        try:
            r["big_start"] = time.time()
            outs = llm.generate(cycled(prompts, big), params, use_tqdm=False)
            r["big_done"] = time.time()
        finally:  # never leave busy loops behind to skew what runs next
            for hog in hogs:
                hog.kill()
        r["big_counts"] = [len(o.outputs[0].token_ids) for o in outs]
        r["big_prompt_tokens"] = sum(len(o.prompt_token_ids or ()) for o in outs)
    return r


def worker_diffusion(registry: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """The registry's diffusion engine alone on the requests: calls of ``max_batch_size`` compatible images."""
    import asyncio

    from farm.openai.images import ImageGenerationRequest
    from serve.diffusion.engine import DiffusersEngine
    from serve.diffusion.protocol import ImageRequest, group_compatible
    from serve.registry import ModelRegistry

    r: dict[str, Any] = {"imported": time.time()}
    spec = ModelRegistry.from_yaml(registry).get(IMAGE_MODEL)
    loop = asyncio.new_event_loop()
    engine = DiffusersEngine.from_spec(spec)
    loop.run_until_complete(engine.start())
    r["engine_ready"] = time.time()
    requests = [ImageRequest.model_validate(ImageGenerationRequest.model_validate(b).diffusion_body()) for b in bodies]
    jobs = [job for request in requests for job in request.jobs(engine.defaults)]
    images = 0
    for group in group_compatible(jobs):
        for start in range(0, len(group), spec.max_batch_size):
            images += len(loop.run_until_complete(engine.generate([jobs[i] for i in group[start:start + spec.max_batch_size]])))
    r["done"], r["images"] = time.time(), images
    return r


def worker_hf(model: str, texts: list[str], max_tokens: int, batch: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ids = token_ids(tok, texts)
    r: dict[str, Any] = {"imported": time.time(), "prompt_tokens": sum(map(len, ids)), "threads": torch.get_num_threads()}
    lm = AutoModelForCausalLM.from_pretrained(model, dtype="auto").eval()  # bf16 from the config, as vLLM runs it
    r["engine_ready"] = time.time()
    pad, eos = tok.pad_token_id, tok.eos_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    counts = [0] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chunk = order[start:start + batch]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in chunk])
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in chunk])
            out = lm.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                              pad_token_id=pad, eos_token_id=eos)[:, width:]
            for row, i in zip(out.tolist(), chunk):
                counts[i] = row.index(eos) + 1 if eos in row else len(row)  # the EOS counts, as in vLLM
    r["done"], r["counts"] = time.time(), counts
    return r


@dataclass
class ImageSide:
    """One side of the images figure; times are seconds."""

    name: str
    images: int = 0
    end_to_end: float = float("nan")
    in_runner: float = float("nan")
    steady: float = float("nan")
    ok: bool = True
    note: str = ""

    def rate(self, span: str) -> float:
        t = getattr(self, span)
        return self.images / t if t > 0 else float("nan")


@dataclass
class Side:
    """One side's result; times are seconds."""

    name: str
    requests: int
    tokens: int = 0
    full_length: int = 0  # requests that generated max_tokens
    prompt_tokens: int = 0
    end_to_end: float = float("nan")
    in_runner: float = float("nan")
    steady: float = float("nan")
    steady_tokens: int = 0
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def rate(self, span: str) -> float:
        tokens = self.steady_tokens if span == "steady" else self.tokens
        t = getattr(self, span)
        return tokens / t if t > 0 else float("nan")


# --- CPU by process group ---------------------------------------------------------------------

ENGINE = "vLLM engine core + worker processes"
FRONT = "vLLM front end (farm: the Ray Data actor; bare: the LLM process)"
STAGES = "Ray Data CPU stages (chat template, tokenize, detokenize, read, filter, postprocess)"
GROUPS = (
    (RUNNER, "runner = Ray Job driver (validation, Ray Data driver, part files, items)"),
    ("VLLM::", ENGINE), ("spawn_main", ENGINE),
    ("vLLMEngineStageUDF", FRONT), ("--worker vllm", FRONT),
    ("--worker hf", "Hugging Face process"), ("# co-load", "synthetic co-load (bare vLLM + the farm's co-load only)"),
    *((key, STAGES) for key in ("ChatTemplateUDF", "TokenizeUDF", "DetokenizeUDF", "ReadPandasJSON", "Filter", "_postprocess")),
)
RAY = "Ray itself (raylet, GCS, dashboard, agents, job supervisor, Ray Data's helper actors, idle workers)"
OURS = "this process: control plane (API, dispatcher), benchmark client, samplers"
OTHERS = "everything else on the machine (other users' processes)"


class CpuProfile(threading.Thread):
    """CPU-seconds by process group, sampled every CPU_PERIOD_S.

    Covers every process started under `roots` (once seen, a process is
    followed even when it is re-parented), this process, and the rest of
    the machine. A Ray worker's command line names the task or actor it
    runs, so a reused worker's time goes to what it runs at each sample.
    """

    def __init__(self, *roots: int) -> None:
        super().__init__(daemon=True, name="cpu-profile")
        self.roots = roots
        self.stop = threading.Event()
        self.snaps: list[tuple[float, dict[str, float]]] = []
        self.ray_snaps: list[dict[str, float]] = []  # Ray itself, per process name, beside each snap
        self.engine_init_seen = False
        self.engine_ready: float | None = None  # the vLLM actor's title lost its ".__init__"

    @staticmethod
    def group(cmdline: str) -> str:
        return next((g for key, g in GROUPS if key in cmdline), RAY)

    @staticmethod
    def short(cmdline: str) -> str:
        """A Ray process's name: its executable or script, or the actor/task a worker runs."""
        words = cmdline.split()
        if not words:
            return "?"
        if words[0].startswith("ray::"):
            return words[0]
        script = next((w for w in words[1:] if w.endswith(".py")), None)
        return Path(script or words[0]).name

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        known: dict[int, psutil.Process] = {me.pid: me}
        last: dict[int, float] = {}
        acc: dict[str, float] = {}
        ray_acc: dict[str, float] = {}
        busy = lambda c: sum(c) - c.idle - getattr(c, "iowait", 0.0)  # noqa: E731
        machine0 = busy(psutil.cpu_times())
        first = True
        while True:
            for root in self.roots:
                try:
                    top = psutil.Process(root)
                    for proc in [top, *top.children(recursive=True)]:
                        known.setdefault(proc.pid, proc)
                except psutil.Error:
                    pass
            for pid, proc in list(known.items()):
                try:
                    with proc.oneshot():
                        t = proc.cpu_times()
                        cmdline = " ".join(proc.cmdline())
                        label = OURS if pid == me.pid else self.group(cmdline)
                except psutil.Error:
                    del known[pid]
                    continue
                if "vLLMEngineStageUDF" in cmdline:
                    if "__init__" in cmdline:
                        self.engine_init_seen = True
                    elif self.engine_init_seen and self.engine_ready is None:
                        self.engine_ready = time.time()
                used = t.user + t.system
                before = last.get(pid, used if first else 0.0)  # new processes count from 0
                last[pid] = used
                acc[label] = acc.get(label, 0.0) + max(0.0, used - before)
                if label == RAY:
                    name = self.short(cmdline)
                    ray_acc[name] = ray_acc.get(name, 0.0) + max(0.0, used - before)
            snap = dict(acc)
            snap[OTHERS] = max(0.0, busy(psutil.cpu_times()) - machine0 - sum(acc.values()))
            self.snaps.append((time.time(), snap))
            self.ray_snaps.append(dict(ray_acc))
            first = False
            if self.stop.wait(CPU_PERIOD_S):
                return

    def _bounds(self, a: float | None, b: float | None) -> tuple[int, int] | None:
        """Indices of the last sample at or before `a` and the first at or after `b`."""
        if a is None or b is None or not self.snaps:
            return None
        i = next((i for i in reversed(range(len(self.snaps))) if self.snaps[i][0] <= a), 0)
        j = next((j for j in range(len(self.snaps)) if self.snaps[j][0] >= b), len(self.snaps) - 1)
        return i, j

    def between(self, a: float | None, b: float | None) -> tuple[dict[str, float], float]:
        """CPU-seconds per group from the last sample at or before `a` to the first at or after `b`, and that span."""
        bounds = self._bounds(a, b)
        if bounds is None:
            return {}, float("nan")
        (t0, start), (t1, end) = self.snaps[bounds[0]], self.snaps[bounds[1]]
        return {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}, t1 - t0

    def ray_between(self, a: float | None, b: float | None) -> dict[str, float]:
        """CPU-seconds of Ray's own processes, by name, over the same span as `between`."""
        bounds = self._bounds(a, b)
        if bounds is None:
            return {}
        start, end = self.ray_snaps[bounds[0]], self.ray_snaps[bounds[1]]
        return {k: end.get(k, 0.0) - start.get(k, 0.0) for k in end}


# --- the peers, run as subprocesses --------------------------------------------------------------


def run_peer(kind: str, texts: list[str], model: Path, args: argparse.Namespace, logdir: Path, co_load_cores: float = 0.0) -> list[Side]:
    prompts = logdir / "prompts.json"
    prompts.write_text(json.dumps(texts))
    log = logdir / f"{kind}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--model", str(model), "--prompts", str(prompts),
           "--max-tokens", str(args.max_tokens), "--hf-batch", str(args.hf_batch), "--big", str(args.big if kind == "vllm" else 0), "--co-load", f"{co_load_cores:.3f}"]
    spawned = time.time()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        cpu = CpuProfile(proc.pid)
        cpu.start()
        code = proc.wait()
        cpu.stop.set()
        cpu.join()
    name = "bare vLLM LLM.generate" if kind == "vllm" else f"HF generate (batch {args.hf_batch})"
    if co_load_cores:
        name += f" + {co_load_cores:.2f} cores of co-load"
    lines = [x for x in log.read_text().splitlines() if x.startswith("BENCH_RESULT ")]
    if code != 0 or not lines:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        return [Side(f"{name} ({len(texts):,})", len(texts), ok=False, note=f"exit {code}, log {log}:\n{tail}")]
    r = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    start, load = r["engine_ready"] - spawned, r["engine_ready"] - r["imported"]
    counts = r["counts"]
    gen = r["done"] - r["engine_ready"]
    side = Side(f"{name} ({len(texts):,})", len(texts), sum(counts), sum(c == args.max_tokens for c in counts), r["prompt_tokens"],
                end_to_end=r["done"] - spawned, in_runner=r["done"] - r["imported"], steady=gen, steady_tokens=sum(counts))
    side.extra.update(start=start, imports=r["imported"] - spawned,
                      cpu={"start-up": cpu.between(spawned, r["engine_ready"]), "generate": cpu.between(r["engine_ready"], r["done"])})
    sides = [side]
    if "big_counts" in r:
        counts = r["big_counts"]
        gen = r["big_done"] - r["big_start"]
        big = Side(f"{name} ({len(counts):,}) *", len(counts), sum(counts), sum(c == args.max_tokens for c in counts), r["big_prompt_tokens"],
                   end_to_end=start + gen, in_runner=load + gen, steady=gen, steady_tokens=sum(counts))
        big.extra["cpu"] = {"generate": cpu.between(r["big_start"], r["big_done"])}
        sides.append(big)
    return sides


def run_engine(bodies: list[dict[str, Any]], registry: Path, logdir: Path) -> ImageSide:
    """The diffusion engine alone on the image requests, in a subprocess with the threads Ray gives the farm's actor."""
    from serve.registry import ModelRegistry

    cpus = ModelRegistry.from_yaml(registry).get(IMAGE_MODEL).cpus
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, int(cpus)))}  # what Ray sets for an actor of that many CPUs
    requests = logdir / "images.json"
    requests.write_text(json.dumps(bodies))
    log = logdir / "diffusion.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "diffusion", "--registry", str(registry), "--prompts", str(requests)]
    spawned = time.time()
    with log.open("w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    name = f"diffusion engine alone ({len(bodies):,})"
    lines = [x for x in log.read_text().splitlines() if x.startswith("BENCH_RESULT ")]
    if code != 0 or not lines:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        return ImageSide(name, ok=False, note=f"exit {code}, log {log}:\n{tail}")
    r = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    return ImageSide(name, r["images"], end_to_end=r["done"] - spawned, in_runner=r["done"] - r["imported"],
                     steady=r["done"] - r["engine_ready"])


# --- the farm ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aware(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class RunnerMemory(threading.Thread):
    """Samples the RSS of a job's runner (the Ray Job driver only, not its children)."""

    def __init__(self, db_url: str, job_id: str) -> None:
        super().__init__(daemon=True, name="runner-rss")
        from farm.db import Database

        self.db, self.job_id = Database(db_url), job_id
        self.stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self.pids: list[int] = []

    def run(self) -> None:
        import psutil

        from farm.db import Job

        proc: psutil.Process | None = None
        while not self.stop.is_set():
            if proc is None:
                with self.db.session() as s:
                    pid = s.get(Job, self.job_id).runner_pid  # type: ignore[union-attr]
                if pid and pid not in self.pids:
                    try:
                        candidate = psutil.Process(pid)
                        if RUNNER in " ".join(candidate.cmdline()):
                            proc = candidate
                            self.pids.append(pid)
                    except psutil.Error:
                        pass
            if proc is not None:
                try:
                    self.samples.append((time.time(), proc.memory_info().rss))
                except psutil.Error:  # it exited; a retry would show up as a new pid
                    proc = None
            self.stop.wait(RSS_PERIOD_S)
        self.db.dispose()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def at(self, moment: float | None) -> int:
        """RSS of the last sample at or before `moment`."""
        before = [rss for t, rss in self.samples if moment is not None and t <= moment]
        return before[-1] if before else 0


class FarmSide:
    def __init__(self, home: Path, head: Any, models: dict[str, Path], max_lines: int) -> None:
        import yaml

        from farm.bootstrap import create_org_with_admin
        from farm.embedded import EmbeddedFarm
        from farm.settings import Settings
        from serve.demo import DEMO_LLM_ENGINE_KWARGS

        self.head_pid = head.pid
        self.registry = registry = home.parent / "models.yaml"
        registry.write_text(yaml.safe_dump({"models": [
            {"name": MODEL, "kind": "llm", "source": str(models[MODEL]), "engine_kwargs": dict(DEMO_LLM_ENGINE_KWARGS)},
            {"name": IMAGE_MODEL, "kind": "diffusion", "source": str(models[IMAGE_MODEL])}]}))
        self.settings = Settings(
            home=home, api={"port": free_port()}, ray={"dashboard_url": head.dashboard_url, "address": head.address},
            dispatch={"poll_s": 0.2}, models={"registry_file": registry}, batch={"max_lines": max(max_lines, 50_000)},
        )
        self.farm = EmbeddedFarm(self.settings, start_ray=False)
        self.farm.prepare()
        _, self.key = create_org_with_admin(self.farm.db, "batch-bench")
        self.farm.start()

    def stop(self) -> None:
        self.farm.stop()

    def submit(self, endpoint: str, bodies: list[dict[str, Any]], timeout_s: float,
               created: Callable[[Any], None] | None = None) -> tuple[Any, Any, float, float]:
        """Upload the input file, create the batch (then call ``created``), poll until it ends: (client, batch, sent, seen)."""
        from openai import OpenAI

        client = OpenAI(base_url=f"{self.settings.base_url}/v1", api_key=self.key, max_retries=0, timeout=300)
        body = "".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": endpoint, "body": b}) + "\n" for i, b in enumerate(bodies))
        f = client.files.create(file=("requests.jsonl", body.encode()), purpose="batch")
        sent = time.time()
        batch = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
        if created is not None:
            created(batch)
        deadline = time.monotonic() + timeout_s
        while batch.status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(POLL_S)
            batch = client.batches.retrieve(batch.id)
        return client, batch, sent, time.time()

    def run_images(self, bodies: list[dict[str, Any]], timeout_s: float) -> ImageSide:
        name = f"farm batch.images ({len(bodies):,})"
        client, batch, sent, seen = self.submit("/v1/images/generations", bodies, timeout_s)
        if batch.status != "completed" or batch.request_counts.failed:
            return ImageSide(name, ok=False, note=f"batch {batch.id} is {batch.status} after {seen - sent:.0f} s: {batch.request_counts} {batch.errors}")
        images = sum(len(json.loads(raw)["response"]["body"]["data"])
                     for raw in client.files.content(batch.output_file_id).text.splitlines() if raw.strip())
        t, progress = self._moments(batch)
        first = next((at for at, n in progress if n > 0), None)
        last = next((at for at, n in progress if n == len(bodies)), None)
        return ImageSide(name, images, end_to_end=t["finished"] - t["created"],  # type: ignore[operator]
                         in_runner=t["finalizing"] - t["in_progress"],  # type: ignore[operator]
                         steady=(last - first) if first is not None and last is not None and last > first else float("nan"))

    def run(self, texts: list[str], max_tokens: int, timeout_s: float) -> tuple[Side, RunnerMemory]:
        name = f"farm batch.chat ({len(texts):,})"
        bodies = [{"model": MODEL, "messages": [{"role": "user", "content": t}], "max_tokens": max_tokens, "temperature": 0} for t in texts]
        cpu = CpuProfile(self.head_pid)
        cpu.start()
        runner: list[RunnerMemory] = []

        def watch(batch: Any) -> None:
            runner.append(RunnerMemory(self.settings.db.url, batch.job_id))
            runner[0].start()

        client, batch, sent, seen = self.submit("/v1/chat/completions", bodies, timeout_s, watch)
        memory = runner[0]
        for thread in (memory, cpu):
            thread.stop.set()
            thread.join()
        if batch.status != "completed":
            return Side(name, len(texts), ok=False, note=f"batch {batch.id} is {batch.status} after {seen - sent:.0f} s: {batch.errors}"), memory

        usage = {}
        for raw in client.files.content(batch.output_file_id).text.splitlines():  # type: ignore[arg-type]
            if raw.strip():
                line = json.loads(raw)
                usage[int(line["custom_id"].removeprefix("req-")) + 1] = line["response"]["body"]["usage"]
        side = self._timeline(name, batch, usage, max_tokens, sent, seen, cpu.engine_ready)
        x = side.extra
        x["rss_first_items"] = memory.at(x["first_item"])
        x["cpu"] = {"start-up": cpu.between(x["in_progress"], x["engine_ready"]), "generation": cpu.between(x["engine_ready"], x["last_item"])}
        x["ray_cpu"] = cpu.ray_between(x["engine_ready"], x["last_item"])
        if batch.request_counts.failed:  # type: ignore[union-attr]
            side.ok, side.note = False, f"{batch.request_counts.failed} requests failed"  # type: ignore[union-attr]
        return side, memory

    def _moments(self, batch: Any) -> tuple[dict[str, float | None], list[tuple[float | None, int]]]:
        """The batch's and its job's timestamps, and (time, requests succeeded) of each progress event."""
        from sqlalchemy import select

        from farm.db import Job, JobEvent
        from farm.db.models import Batch

        with self.farm.db.session() as s:
            row, job = s.get(Batch, batch.id), s.get(Job, batch.job_id)
            assert row is not None and job is not None
            t = {"created": aware(row.created_at), "started": aware(job.started_at), "in_progress": aware(row.in_progress_at),
                 "finalizing": aware(row.finalizing_at), "finished": aware(job.finished_at)}
            t["runner"] = aware(s.scalars(select(JobEvent.created_at).where(JobEvent.job_id == job.id, JobEvent.type == "runner")
                                          .order_by(JobEvent.seq.desc()).limit(1)).first())
            progress = [(aware(e.created_at), int(e.data.get("succeeded") or 0)) for e in s.scalars(
                select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "progress").order_by(JobEvent.seq))]
        return t, progress

    def _timeline(self, name: str, batch: Any, usage: dict[int, dict[str, int]], max_tokens: int, sent: float, seen: float,
                  engine_ready: float | None) -> Side:
        t, progress = self._moments(batch)
        # a recording (ctx.flush) inserts its items, then a progress event, in one transaction
        done = max((n for _, n in progress), default=0)
        first = next((at for at, n in progress if n > 0), None)
        last = next((at for at, n in progress if n == done and n > 0), None)
        tokens = [u["completion_tokens"] for u in usage.values()]
        side = Side(name, len(usage), sum(tokens), sum(c >= max_tokens for c in tokens), sum(u["prompt_tokens"] for u in usage.values()),
                    end_to_end=t["finished"] - t["created"],  # type: ignore[operator]
                    in_runner=t["finalizing"] - t["in_progress"],  # type: ignore[operator]
                    steady=(last - engine_ready) if engine_ready is not None and last is not None else float("nan"), steady_tokens=sum(tokens))
        side.extra.update(t, engine_ready=engine_ready, first_item=first, last_item=last, sent=sent, seen=seen,
                          recordings=sum(1 for (_, a), (_, b) in zip(progress, progress[1:]) if b > a))
        return side


# --- report ------------------------------------------------------------------------------------


def extra_load(farm: Side, bare: Side | None) -> float:
    """Cores the farm's own processes (all but the engine) kept busy while generating, beyond bare vLLM's own."""
    if not farm.ok or bare is None or not bare.ok:
        return 0.0

    def cores(used: dict[str, float], wall: float) -> float:
        return sum(v for k, v in used.items() if k not in (ENGINE, OTHERS)) / wall

    return max(0.0, cores(*farm.extra["cpu"]["generation"]) - cores(*bare.extra["cpu"]["generate"]))


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def ratio(a: Side | None, b: Side | None, span: str) -> float:
    return a.rate(span) / b.rate(span) if a and b and a.ok and b.ok else float("nan")


def own_cpu(side: Side, window: str) -> float:
    """CPU-seconds of the side's own processes (all but OTHERS) in one of its windows."""
    used, _ = side.extra.get("cpu", {}).get(window, ({}, 0.0))
    return sum(v for k, v in used.items() if k != OTHERS)


def per_cpu(side: Side | None, window: str) -> float:
    """Output tokens per CPU-second of the side's own processes while it generated."""
    if side is None or not side.ok:
        return float("nan")
    cpu = own_cpu(side, window)
    return side.tokens / cpu if cpu > 0 else float("nan")


def report(out: Any, args: argparse.Namespace, sides: dict[str, Side], mem: dict[str, RunnerMemory]) -> None:
    from rich.table import Table

    farm_n, farm_big = sides.get("farm"), sides.get("farm big")
    vllm, vllm_big, hf = sides.get("vllm"), sides.get("vllm big"), sides.get("hf")
    table = Table(title=f"output tokens/s: N = {args.requests:,} chat requests (big: {args.big:,}), max_tokens {args.max_tokens}, greedy")
    for col in ("side", "requests", "output tokens", "ran to max_tokens", "prompt tokens", "end to end", "tok/s",
                "in the runner", "tok/s", "steady state", "tok/s"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for s in sides.values():
        if not s.ok:
            table.add_row(s.name, f"{s.requests:,}", "[red]failed", *[""] * 8)
            continue
        table.add_row(s.name, f"{s.requests:,}", f"{s.tokens:,}", f"{s.full_length:,}", f"{s.prompt_tokens:,}",
                      f"{s.end_to_end:.1f} s", f"{s.rate('end_to_end'):,.0f}", f"{s.in_runner:.1f} s", f"{s.rate('in_runner'):,.0f}",
                      f"{s.steady:.1f} s", f"{s.rate('steady'):,.0f}")
    out.print(table)
    out.print("end to end: farm batch created -> completed, peers process spawned -> generate returned; in the runner: farm "
              "in_progress_at -> finalizing_at, peers engine/model construction + generate; steady state: farm vLLM engine actor "
              "ready -> last item recorded, peers generate only. * derived: the same engine's start-up "
              "(spawn -> ready) + generate of the big batch's prompts, run right after the N prompts")

    ratios = Table(title="ratios (tokens/s over tokens/s)")
    for col in ("span", "farm / vLLM", "target", "farm / HF", "vLLM / HF"):
        ratios.add_column(col, justify="left" if col == "span" else "right")
    rows = [("end to end, N (incl. the farm's engine start-up)", farm_n, vllm, True),
            ("in the runner, N (incl. engine start-up)", farm_n, vllm, True),
            ("steady state, N (excl. engine start-up)", farm_n, vllm, True),
            (f"end to end, {args.big:,} (incl. start-up, vLLM derived)", farm_big, vllm_big, False),
            (f"steady state, {args.big:,} (excl. start-up)", farm_big, vllm_big, False)]
    for label, f, v, with_hf in rows:
        if f is None or v is None:
            continue
        span = "end_to_end" if "end to end" in label else "in_runner" if "runner" in label else "steady"
        r = ratio(f, v, span)
        met = "[green]met" if r >= 0.8 else "[red]missed"
        ratios.add_row(label, f"×{r:.2f}", f"≥ ×0.80 {met}", f"×{ratio(f, hf, span):.2f}" if with_hf else "–",
                       f"×{ratio(v, hf, span):.2f}" if with_hf else "–")
    loaded = sides.get("vllm co-load")
    if farm_big is not None and vllm_big is not None and loaded is not None and loaded.ok:
        ratios.add_row(f"steady state, {args.big:,}: bare vLLM beside the farm's co-load / bare vLLM", f"×{ratio(loaded, vllm_big, 'steady'):.2f}",
                       "(diagnostic)", "–", "–")
        ratios.add_row(f"steady state, {args.big:,}: farm / bare vLLM beside the farm's co-load", f"×{ratio(farm_big, loaded, 'steady'):.2f}",
                       "(diagnostic)", "–", "–")
    for label, f, v in (("tokens per own CPU-second while generating, N", farm_n, vllm),
                        (f"tokens per own CPU-second while generating, {args.big:,}", farm_big, vllm_big)):
        if f is not None and v is not None:
            a, b = per_cpu(f, "generation"), per_cpu(v, "generate")
            ratios.add_row(label, f"×{a / b:.2f}", f"{a:,.0f} vs {b:,.0f} tok/CPU-s", "–", "–")
    out.print(ratios)
    out.print("own CPU: every process of the side (farm: the Ray head's tree and this process; vLLM: its subprocess tree and this "
              "process), i.e. the machine's busy time less other users'; less sensitive to their load than wall time")

    runs = [s for s in (farm_n, farm_big) if s is not None and s.ok]
    phases = Table(title="where the farm's time goes")
    phases.add_column("phase")
    for s in runs:
        phases.add_column(f"{s.requests:,} requests", justify="right")
    spans = (("created -> dispatched (queue, claim)", "created", "started"),
             ("dispatched -> runner up (Ray Job start, imports, DB)", "started", "runner"),
             ("runner up -> in_progress (validation)", "runner", "in_progress"),
             ("in_progress -> vLLM engine actor ready (Ray Data start, actor and engine start-up)", "in_progress", "engine_ready"),
             ("engine ready -> first items recorded (the first output block reaches the driver)", "engine_ready", "first_item"),
             ("first -> last items recorded", "first_item", "last_item"),
             ("last items recorded -> finalizing (drain, Ray Data shutdown)", "last_item", "finalizing"),
             ("finalizing -> finished (merge parts into the output file)", "finalizing", "finished"),
             ("finished -> client saw completed (poll every 0.25 s)", "finished", "seen"))
    for label, a, b in spans:
        cells = []
        for s in runs:
            x, y = s.extra.get(a), s.extra.get(b)
            cells.append(f"{y - x:.1f} s" if x is not None and y is not None else "–")
        phases.add_row(label, *cells)
    phases.add_row("item recordings (a part file, then its items: every 256 lines or 1 s)", *[f"{s.extra['recordings']}" for s in runs])
    out.print(phases)
    if vllm is not None and vllm.ok:
        out.print(f"bare vLLM: {vllm.extra['start']:.1f} s from spawn to engine ready (imports and tokenizing "
                  f"{vllm.extra['imports']:.1f} s), generate {vllm.steady:.1f} s")

    windows = [(f"farm {s.requests:,}: {w}", s.extra["cpu"][w]) for s in runs for w in ("start-up", "generation")]
    windows += [(f"bare vLLM: {w}", vllm.extra["cpu"][w]) for w in ("start-up", "generate") if vllm is not None and vllm.ok]
    windows += [(f"bare vLLM {s.requests:,}: generate", s.extra["cpu"]["generate"]) for s in (vllm_big,) if s is not None and s.ok]
    windows += [(f"bare vLLM {s.requests:,} + co-load", s.extra["cpu"]["generate"]) for s in (sides.get("vllm co-load"),) if s is not None and s.ok]
    cpu = Table(title=f"CPU-seconds by process group (share of all the machine's busy time), sampled every {CPU_PERIOD_S} s; "
                      f"{os.cpu_count()} cores give {os.cpu_count()} CPU-s per second")
    cpu.add_column("process group", max_width=48)
    for label, (_, wall) in windows:
        cpu.add_column(f"{label} ({wall:.0f} s)", justify="right", max_width=16)
    for group in dict.fromkeys([*(g for _, g in GROUPS), RAY, OURS, OTHERS]):
        cells = []
        for _, (used, _) in windows:
            total = sum(used.values())
            cells.append(f"{used.get(group, 0.0):.1f} ({used.get(group, 0.0) / total:.0%})" if total else "–")
        if any(c[:3] not in ("0.0", "–") for c in cells):
            cpu.add_row(group, *cells)
    cpu.add_row("[bold]own (all but everything else)", *[f"{sum(v for k, v in u.items() if k != OTHERS):.1f}" for _, (u, _) in windows])
    cpu.add_row("[bold]all", *[f"{sum(u.values()):.1f}" for _, (u, _) in windows])
    out.print(cpu)
    for s in runs:
        top = sorted(s.extra.get("ray_cpu", {}).items(), key=lambda kv: -kv[1])[:8]
        if top:
            out.print(f"Ray itself while the farm generates {s.requests:,} requests, CPU-s: "
                      + ", ".join(f"{name} {v:.1f}" for name, v in top))

    if farm_n is not None and farm_big is not None and farm_n.ok and farm_big.ok:
        small, big = mem["farm"], mem["farm big"]
        r = big.peak / small.peak if small.peak else float("nan")
        met = "[green]met" if r <= 1.5 else "[red]missed"
        memt = Table(title=f"runner RSS: the Ray Job driver `python -m {RUNNER}` only (not its children), sampled every 0.1 s")
        for col in ("batch", "samples", "first sample", "at first items recorded", "peak"):
            memt.add_column(col, justify="left" if col == "batch" else "right")
        for s, m in ((farm_n, small), (farm_big, big)):
            memt.add_row(f"{s.requests:,} requests", f"{len(m.samples):,}", mib(m.samples[0][1] if m.samples else 0),
                         mib(s.extra["rss_first_items"]), mib(m.peak))
        out.print(memt)
        out.print(f"peak RSS {args.big:,} / {args.requests:,} requests = ×{r:.2f} (target ≤ ×1.5: {met}[/]); "
                  "the vLLM engine runs in a Ray actor, not in the driver")


def report_images(out: Any, args: argparse.Namespace, farm: ImageSide, engine: ImageSide) -> None:
    from rich.table import Table

    table = Table(title=f"images/s: {args.images:,} image requests ({IMAGE_MODEL}, {IMAGE_SIZE}x{IMAGE_SIZE}, {IMAGE_STEPS} steps, "
                        "one image each)")
    for col in ("side", "images", "end to end", "img/s", "in the runner", "img/s", "steady state", "img/s"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for side in (farm, engine):
        if not side.ok:
            table.add_row(side.name, "[red]failed", *[""] * 6)
            continue
        table.add_row(side.name, f"{side.images:,}", *(cell for span in ("end_to_end", "in_runner", "steady")
                                                       for cell in (f"{getattr(side, span):.1f} s", f"{side.rate(span):,.1f}")))
    if farm.ok and engine.ok:
        table.add_row("farm / engine alone", "", "", f"×{farm.rate('end_to_end') / engine.rate('end_to_end'):.2f}",
                      "", f"×{farm.rate('in_runner') / engine.rate('in_runner'):.2f}", "", f"×{farm.rate('steady') / engine.rate('steady'):.2f}")
    out.print(table)
    out.print("end to end: farm batch created -> job finished, engine process spawned -> last image; in the runner: farm "
              "in_progress_at -> finalizing_at, engine construction + rendering; steady state: farm first -> last items recorded "
              "(– when they all arrived at once), engine rendering only. The farm also stores every PNG and records it as an asset.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000, help="chat requests in the measured batch (default 1,000; 0 skips batch.chat)")
    parser.add_argument("--big", type=int, default=20_000, help="requests in the big batch: steady state and memory (default 20,000; 0 skips it)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of every request (default 16)")
    parser.add_argument("--hf-batch", type=int, default=256, help="prompts per Hugging Face generate call (default 256)")
    parser.add_argument("--timeout-s", type=float, default=3600, help="give up on a batch after this long")
    parser.add_argument("--no-co-load", action="store_true", help="skip bare vLLM with the farm's co-load (about 80 s)")
    parser.add_argument("--images", type=int, default=256, help="image requests in the batch.images figure (default 256; 0 skips it)")
    parser.add_argument("--worker", choices=("vllm", "hf", "diffusion"), help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--co-load", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        if args.worker == "diffusion":
            result = worker_diffusion(args.registry, json.loads(Path(args.prompts).read_text()))
        else:
            texts = json.loads(Path(args.prompts).read_text())
            if args.worker == "vllm":
                result = worker_vllm(args.model, texts, args.max_tokens, args.big, args.co_load)
            else:
                result = worker_hf(args.model, texts, args.max_tokens, args.hf_batch)
        print("BENCH_RESULT " + json.dumps(result), flush=True)
        return 0

    from rich.console import Console

    from cluster.local import LocalRayHead

    err = Console(stderr=True)
    out = Console(width=None if sys.stdout.isatty() else 180)
    started = time.monotonic()
    loads = [("before", os.getloadavg()[0])]
    models = model_paths()
    model = models[MODEL]
    texts = prompt_texts(args.requests)
    out.print(f"[bold]Batch inference[/]: {args.requests:,} chat requests (big batch: {args.big:,}, the same prompts cycled), "
              f"max_tokens {args.max_tokens}, temperature 0, no ignore_eos (the farm does not forward it), model {MODEL} ({model}); "
              f"{args.images:,} image requests, model {IMAGE_MODEL}\n"
              f"machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}; "
              f"Ray head with 8 logical CPUs; farm on SQLite; load average (1 min) {loads[0][1]:.1f} before")

    sides: dict[str, Side] = {}
    mem: dict[str, RunnerMemory] = {}
    images: dict[str, ImageSide] = {}
    with LocalRayHead(num_cpus=8) as head, tempfile.TemporaryDirectory(prefix="farm-batch-bench-") as tmp:
        farm = FarmSide(Path(tmp) / "home", head, models, args.big)
        try:
            if args.requests:
                err.log(f"bare vLLM: {args.requests:,} requests, then {args.big:,}")
                for key, side in zip(("vllm", "vllm big"), run_peer("vllm", texts, model, args, Path(tmp))):
                    sides[key] = side
                loads.append(("after vLLM", os.getloadavg()[0]))
                err.log(f"farm: batch of {args.requests:,} requests")
                sides["farm"], mem["farm"] = farm.run(texts, args.max_tokens, args.timeout_s)
                loads.append(("after farm N", os.getloadavg()[0]))
                err.log(f"Hugging Face: {args.requests:,} requests")
                sides["hf"] = run_peer("hf", texts, model, args, Path(tmp))[0]
                loads.append(("after HF", os.getloadavg()[0]))
            if args.requests and args.big:
                err.log(f"farm: batch of {args.big:,} requests")
                sides["farm big"], mem["farm big"] = farm.run(cycled(texts, args.big), args.max_tokens, args.timeout_s)
                loads.append(("after farm big", os.getloadavg()[0]))
                extra = extra_load(sides["farm big"], sides.get("vllm big"))
                if not args.no_co_load and extra > 0:
                    err.log(f"bare vLLM: {args.big:,} requests beside {extra:.2f} cores of co-load (the farm's own processes' extra)")
                    sides["vllm co-load"] = run_peer("vllm", texts, model, args, Path(tmp), extra)[-1]
                    loads.append(("after co-load", os.getloadavg()[0]))
            if args.images:
                bodies = image_bodies(args.images)
                err.log(f"diffusion engine alone: {args.images:,} image requests")
                images["engine"] = run_engine(bodies, farm.registry, Path(tmp))
                loads.append(("after the engine", os.getloadavg()[0]))
                err.log(f"farm: batch of {args.images:,} image requests")
                images["farm"] = farm.run_images(bodies, args.timeout_s)
                loads.append(("after farm images", os.getloadavg()[0]))
        finally:
            farm.stop()
    if sides:
        order = ("farm", "farm big", "vllm", "vllm big", "vllm co-load", "hf")
        report(out, args, {k: sides[k] for k in order if k in sides}, mem)
    if images:
        report_images(out, args, images["farm"], images["engine"])
    out.print("load average (1 min): " + ", ".join(f"{label} {v:.1f}" for label, v in loads))
    out.print(f"benchmark took {time.monotonic() - started:.0f} s in all")
    failed = [s for s in (*sides.values(), *images.values()) if not s.ok]
    for s in failed:
        out.print(f"[red]{s.name}: {s.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
