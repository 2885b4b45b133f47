"""`video.restyle` through the farm against the diffusion engine alone and a naive diffusers loop; peak memory vs video length.

    .venv/bin/python benchmarks/restyle.py [--frames 240] [--long-s 300] [--short-s 30] [--memory-size 1920x1080]
                                           [--skip-memory] [--skip-speed] [--media-dir .farm/bench-media]

A quick look (a few minutes on two cores, sources cached after the first run):
``--frames 48 --long-s 4 --short-s 2 --memory-size 320x180``.

One run, the same cores, a ``LocalRayHead(num_cpus=8)`` and an embedded
control plane (API + dispatcher, SQLite in a temp dir) up throughout. The
model is the tiny random-weight demo pipeline ``tiny-sd`` (built by
``serve.demo_models`` into ``.farm/test-models`` or ``$FARM_TEST_MODEL_CACHE``),
named in the farm's registry with ``max_batch_size`` ``--batch`` (8) and the
registry's default of 1 CPU per engine. It is tiny on purpose: the model must
not hide the rest of the pipeline.

The frames/s source is a synthetic video from ``make_video``: ``--size``
640x360, 24 fps, ``--frames`` (240) frames in four shots of 30/20/15/35 % of
them, with audio. Every side renders every frame at the job's working size
(short side ``--short-side`` 128: 224x128), ``--steps`` 4 at ``--strength``
1.0, so **4 denoising steps per frame**, guidance 7.5 (classifier-free: every
UNet call runs each row twice), per-shot seeds, one prompt.

farm job
    The public API: upload the video as an asset, ``POST /v1/jobs`` a
    ``video.restyle`` job (``output_size`` "source", ``chunk_size`` 16, CRF 18
    ``veryfast``), poll ``GET /v1/jobs/{id}`` every 0.25 s until it ends. The
    runner probes and finds the shots, cuts them into chunks that never cross
    a cut, and streams them through Ray Data: decode at the working size
    (tasks) -> ``RenderFrames``, an actor pool of 1 to 4 ``DiffusersEngine``
    (each ``engine.restyle(FrameBatch)`` call: ``max_batch_size`` rows) ->
    scale back and encode each chunk (tasks) -> join the chunks and mux the
    source's audio, contact sheet, report. Run twice: ``consistency`` "none"
    (8 frames per engine call, the headline) and "anchor" (the shot's anchor
    + 7 frames per call).
diffusion engine alone (the ceiling)
    ``DiffusersEngine.from_spec`` of the same registry entry in a subprocess,
    on the very frames the job renders: the script finds the shots with the
    job's detector and decodes the job's chunks with the job's own
    ``DecodeChunk`` beforehand, into memory, untimed. It then renders each
    shot in full ``FrameBatch``es of the same settings: 8 frames per call
    ("none"), or the shot's anchor + 7 frames ("anchor"). It gets the threads
    Ray gives one of the farm's engine actors (``OMP_NUM_THREADS`` = the
    entry's ``cpus``, 1), as ``batch.py`` does for its engine peer: that is
    what one farm engine has, and torch's default of a thread per core
    crawls on a busy machine. A second run with one thread per core (torch's
    default on a quiet machine) shows what one engine makes of all the cores.
naive loop
    ``AutoPipelineForImage2Image.from_pretrained`` of the same model, one
    frame per call (a PIL image in, a PIL image out), the same steps,
    strength, guidance and seeds, the frames decoded beforehand, the same
    threads as the engine alone.

Spans: **end to end** is job ``created_at`` -> ``finished_at`` for the farm
(the upload before it is printed apart) and engine construction + rendering
for the peers (imports and decoding excluded). **Steady state** leaves
start-up out: for the farm, from the first progress event with
``frames_rendered`` > 0 to the one that reaches the total (the runner writes
one at most every 0.5 s, and one when rendering ends), counting only the
frames in between; for the peers, every call after the first. Targets: farm /
engine alone ≥ ×0.8 in steady state ("none"). The farm runs two or more
engines at once where the engine alone has one, so on two cores the farm can
pass it; the all-cores row is the fairer ceiling there, and is printed as a
diagnostic.

The script also times, in the engine's subprocess, the stages around the
engine as the job runs them, one core each: decoding every chunk with
``DecodeChunk`` (seek, decode, scale, the shot's anchor frame) and encoding
the rendered frames as ``EncodeChunk`` does (checksums, differences, H.264 at
the source size). From the job's report (``<video>.restyle.json``) it reads
the engines that rendered (``chunks[].worker``) and how long each chunk took
in its engine (``render_s``).

Memory (``--skip-memory`` skips it): two jobs restyle synthetic sources of the
same kind, ``--memory-size`` 1920x1080, 24 fps, random 2-6 s shots, a
keyframe every 2 s, x264 ``ultrafast`` (quick to generate), with audio: ``--long-s`` 300 s against ``--short-s`` 30 s.
Settings keep them cheap but stream every frame: short side 64, 1 step at
strength 1.0, consistency "none", ``output_size`` "working". A thread sums
the RSS of this process (the embedded farm: API and dispatcher) and of every
process of the Ray head's tree (raylet, GCS, dashboard, the job's driver,
workers and engine actors) every 0.25 s and keeps the peak. Target: peak
(long) / peak (short) ≤ ×1.5. RSS counts shared pages (libraries, Ray's
object store) once per process that maps them, so the sum overstates what
the machine holds; the ratio is the point. Generated sources are kept in
``--media-dir`` (``.farm/`` is git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the farm importable
    sys.path.insert(0, str(REPO))

from report import cpu_model  # noqa: E402  (benchmarks/, the script's own folder)

MODEL = "tiny-sd"
PROMPT = "a watercolor painting of a quiet harbour at dusk"
GUIDANCE = 7.5
SEED = 0
CRF, PRESET = 18, "veryfast"  # the spec's defaults, named here for the encode figure
SHOT_SHARES = (0.30, 0.20, 0.15, 0.35)  # the frames/s source's shots, as shares of its frames
FPS = 24
POLL_S = 0.25
RSS_PERIOD_S = 0.25
TERMINAL = ("succeeded", "failed", "cancelled")
RUNNER = "farm.runner"  # the Ray Job driver's module, as its command line names it
LEFTOVERS = ("ray::JobSupervisor", "ray::MapWorker", "ray::_MapWorker")  # a finished job's processes, on their way out
MEMORY_SPEC = {"short_side": 64, "steps": 1, "strength": 1.0, "consistency": "none", "output_size": "working"}


# --- sources, cached under --media-dir ------------------------------------------------------------


def speed_shots(frames: int) -> list[int]:
    """The frames/s source's shot lengths: four shots (fewer on short videos), none under 8 frames."""
    lengths: list[int] = []
    for share in SHOT_SHARES[:-1]:
        n = max(8, round(frames * share))
        if frames - sum(lengths) - n < 8:
            break
        lengths.append(n)
    return [*lengths, frames - sum(lengths)]


def memory_shots(frames: int, seed: int = 11) -> list[int]:
    """Random shots of 2-6 s (the last one absorbs the rest), the same for every length: a short video is a long one's head."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while sum(lengths) < frames:
        lengths.append(int(rng.integers(2 * FPS, 6 * FPS + 1)))
    lengths[-1] -= sum(lengths) - frames
    if len(lengths) > 1 and lengths[-1] < FPS:  # no runt shot at the end
        runt = lengths.pop()
        lengths[-1] += runt
    return lengths


def cached_video(folder: Path, label: str, size: tuple[int, int], lengths: list[int], log: Any, *, gop: int | None = None,
                 preset: str = "veryfast") -> Path:
    from pipelines.stages.media.synthetic import make_video

    digest = hashlib.sha256(repr((size, FPS, lengths, gop, preset, "audio")).encode()).hexdigest()[:8]
    path = folder / f"restyle-{label}-{size[0]}x{size[1]}-{sum(lengths)}f-{digest}.mp4"
    if not path.exists():
        log(f"generating {path} ({len(lengths)} shots, {sum(lengths) / FPS:.0f} s); kept for later runs")
        t = time.monotonic()
        make_video(path, lengths, size=size, fps=FPS, audio=True, seed=len(lengths), gop=gop, preset=preset)
        log(f"generated in {time.monotonic() - t:.0f} s")
    return path


# --- the peers, run as subprocesses ----------------------------------------------------------------


def job_layout(params: dict[str, Any]) -> tuple[Any, list[Any], list[Any]]:
    """The probe, shots and chunks the job makes of the video: the job's detector and planner, run here."""
    from kinds.video_restyle import VideoRestyleSpec
    from pipelines.stages.backend import run_local
    from pipelines.stages.media.frames import working_size
    from pipelines.stages.payloads import Source
    from pipelines.stages.restyle.plan import Look, plan
    from pipelines.stages.shots.detect import DetectorConfig
    from pipelines.stages.shots.find_shots import find_shots

    spec = VideoRestyleSpec.model_validate({"asset_ids": ["-"], **params["spec"]})
    d = spec.shot_detection()
    config = DetectorConfig(kind=d.detector, threshold=d.threshold, min_shot_len=d.min_shot_len, fades=d.fades, keyframes_per_shot=1)
    path = Path(params["video"])
    detected, failed = find_shots([Source(0, path.name, path=str(path))], config, run=run_local)
    if failed:
        raise RuntimeError(f"{path.name}: {failed[0].message}")
    probed, shots = detected[0].probed, detected[0].shots
    video = probed.video
    working = working_size(video.width, video.height, spec.short_side)
    output = working if spec.output_size == "working" else (video.width - video.width % 2, video.height - video.height % 2)
    look = Look(steps=spec.steps, strength=spec.strength, guidance_scale=spec.guidance_scale, consistency=spec.consistency,
                negative_prompt=None, crf=spec.crf, preset=spec.preset)
    chunks = plan(probed, shots, chunk_size=spec.chunk_size, prompt=spec.prompt, shot_prompts={}, seed=spec.seed,
                  seed_policy=spec.seed_policy, working=working, output=output, look=look)
    return probed, shots, chunks


def worker_engine(params: dict[str, Any]) -> dict[str, Any]:
    """The engine alone on the job's frames, a shot at a time in full calls; with ``diagnose``, decode and encode timed too."""
    import asyncio

    import numpy as np
    import torch

    from pipelines.stages.media.frames import encode_chunk, frame_checksum
    from pipelines.stages.restyle.chunks import DecodeChunk, frame_diffs
    from serve.diffusion.engine import DiffusersEngine
    from serve.diffusion.protocol import FrameBatch, FrameJob
    from serve.registry import ModelRegistry

    r: dict[str, Any] = {"threads": torch.get_num_threads()}
    _, shots, chunks = job_layout(params)
    decoder = DecodeChunk(None)
    t, cpu = time.perf_counter(), time.process_time()
    decoded = [decoder.process(c)[0] for c in chunks]  # the job's own decode of every chunk, anchor included
    r["decode_s"], r["decode_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
    # Per shot: its frames, seeds, anchor image and anchor seed, in frame order.
    by_shot: dict[int, dict[str, Any]] = {}
    for d in decoded:
        s = by_shot.setdefault(d.chunk.shot, {"frames": [], "seeds": [], "anchor": d.anchor, "anchor_seed": d.chunk.anchor_seed})
        s["frames"].extend(d.frames)
        s["seeds"].extend(d.chunk.seeds)
    r["frames"] = sum(len(s["frames"]) for s in by_shot.values())
    r["shots"] = [sh.frames for sh in shots]
    r["chunks"] = len(chunks)

    spec = ModelRegistry.from_yaml(params["registry"]).get(MODEL)
    look = chunks[0].look
    loop = asyncio.new_event_loop()
    t = time.perf_counter()
    engine = DiffusersEngine.from_spec(spec)
    loop.run_until_complete(engine.start())
    r["load_s"] = time.perf_counter() - t
    r["threads_engine"] = torch.get_num_threads()

    rendered_none: list[np.ndarray] = []
    for mode in params["modes"]:
        anchored = mode == "anchor"
        per_call = spec.max_batch_size - (1 if anchored else 0)
        stamps = [time.perf_counter()]
        sizes = []
        for s in by_shot.values():
            anchor = FrameJob(image=s["anchor"], prompt=PROMPT, seed=s["anchor_seed"])
            for first in range(0, len(s["frames"]), per_call):
                jobs = [FrameJob(image=s["frames"][i], prompt=PROMPT, seed=s["seeds"][i], anchor=0 if anchored else None)
                        for i in range(first, min(first + per_call, len(s["frames"])))]
                batch = FrameBatch(frames=jobs, anchors=[anchor] if anchored else [], steps=look.steps, strength=look.strength,
                                   guidance_scale=look.guidance_scale, consistency=mode)  # type: ignore[arg-type]
                out, _ = loop.run_until_complete(engine.restyle(batch))
                if mode == "none":
                    rendered_none.extend(out)
                stamps.append(time.perf_counter())
                sizes.append(len(jobs))
        r[mode] = {"calls": len(sizes), "render_s": stamps[-1] - stamps[0], "first_call_s": stamps[1] - stamps[0],
                   "after_first_s": stamps[-1] - stamps[1], "frames_after_first": sum(sizes[1:])}

    if params.get("diagnose") and rendered_none:
        # EncodeChunk's work on each chunk's rendered frames, minus the object store: checksums, differences, H.264.
        t, cpu = time.perf_counter(), time.process_time()
        at = 0
        with tempfile.TemporaryDirectory(prefix="restyle-bench-") as tmp:
            for c in chunks:
                frames = np.stack(rendered_none[at:at + c.frames])
                at += c.frames
                [frame_checksum(f) for f in frames]
                frame_diffs(frames)
                encode_chunk(frames, c.pts, c.video.time_base, c.video.rate, Path(tmp) / f"{c.part}.mp4", size=c.output,
                             crf=c.look.crf, preset=c.look.preset, rotation=c.video.rotation)
        r["encode_s"], r["encode_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
    return r


def worker_naive(params: dict[str, Any]) -> dict[str, Any]:
    """diffusers' img2img pipeline, one frame per call, PIL in and out: what a first script would do."""
    import torch
    from diffusers import AutoPipelineForImage2Image
    from PIL import Image

    from pipelines.stages.media.frames import decode_frames
    from pipelines.stages.restyle.plan import seed_of

    probed, shots, chunks = job_layout(params)
    frames = decode_frames(Path(params["video"]), range(probed.video.frames), chunks[0].working)  # untimed
    seeds = [seed_of(SEED, "per_shot", sh.index, f) for sh in shots for f in range(sh.start, sh.end)]
    look = chunks[0].look
    r: dict[str, Any] = {"threads": torch.get_num_threads(), "frames": len(frames)}
    t = time.perf_counter()
    pipe = AutoPipelineForImage2Image.from_pretrained(params["model"]).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    r["load_s"] = time.perf_counter() - t
    stamps = [time.perf_counter()]
    with torch.inference_mode():
        for frame, seed in zip(frames, seeds, strict=True):
            image = pipe(prompt=PROMPT, image=Image.fromarray(frame), strength=look.strength, num_inference_steps=look.steps,
                         guidance_scale=look.guidance_scale, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            image.load()
            stamps.append(time.perf_counter())
    r["none"] = {"calls": len(frames), "render_s": stamps[-1] - stamps[0], "first_call_s": stamps[1] - stamps[0],
                 "after_first_s": stamps[-1] - stamps[1], "frames_after_first": len(frames) - 1}
    return r


def run_worker(kind: str, params: dict[str, Any], threads: int, logdir: Path) -> tuple[dict[str, Any] | None, str]:
    """A peer in a subprocess with ``threads`` torch threads: (its result, or None and why)."""
    name = f"{kind}-{'-'.join(params['modes'])}-{threads}t"
    (logdir / f"{name}.json").write_text(json.dumps(params))
    log = logdir / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # what Ray sets for an actor of that many CPUs
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--params", str(logdir / f"{name}.json")]
    with log.open("w") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    lines = [x for x in log.read_text().splitlines() if x.startswith("BENCH_RESULT ")]
    if code != 0 or not lines:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        return None, f"exit {code}, log {log}:\n{tail}"
    return json.loads(lines[-1].removeprefix("BENCH_RESULT ")), ""


# --- memory of the whole farm ---------------------------------------------------------------------------


def process_name(proc: Any) -> str:
    """A process as the table names it: Ray's title (``ray::RenderFrames``…), else its script or executable."""
    try:
        words = proc.cmdline()
    except Exception:  # noqa: BLE001 (gone, or not ours to read)
        return "?"
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0]
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    script = next((w for w in words[1:] if w.endswith(".py")), None)
    return Path(script or words[0]).name


class FarmMemory(threading.Thread):
    """Sum of the RSS of this process (the embedded farm) and every process under the Ray head, every RSS_PERIOD_S.

    A process once seen is followed even if it is re-parented; the peak
    keeps the largest process at that moment too.
    """

    def __init__(self, head_pid: int) -> None:
        super().__init__(daemon=True, name="farm-rss")
        import psutil

        self.head_pid = head_pid
        self.known: dict[int, psutil.Process] = {os.getpid(): psutil.Process()}
        self.stop = threading.Event()
        self.samples = 0
        self.peak = 0
        self.peak_processes = 0
        self.largest = (0, "")

    def sample(self) -> tuple[int, int, tuple[int, str]]:
        import psutil

        try:
            head = psutil.Process(self.head_pid)
            for proc in [head, *head.children(recursive=True)]:
                self.known.setdefault(proc.pid, proc)
        except psutil.Error:
            pass
        total, top, top_pid = 0, 0, 0
        for pid, proc in list(self.known.items()):
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                del self.known[pid]
                continue
            total += rss
            if rss > top:
                top, top_pid = rss, pid
        name = process_name(self.known[top_pid]) if top_pid in self.known else "?"
        return total, len(self.known), (top, name)

    def run(self) -> None:
        while not self.stop.is_set():
            total, count, largest = self.sample()
            self.samples += 1
            if total > self.peak:
                self.peak, self.peak_processes, self.largest = total, count, largest
            self.stop.wait(RSS_PERIOD_S)


# --- the farm ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aware(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class JobRun:
    """One `video.restyle` job through the API; times are epoch seconds."""

    name: str
    ok: bool = True
    note: str = ""
    frames: int = 0
    upload_s: float = float("nan")
    t: dict[str, float | None] = field(default_factory=dict)
    first_frames: tuple[float, int] | None = None  # (time, frames_rendered) of the first progress with frames > 0
    last_frames: float | None = None  # time of the progress event that reached the total
    report: dict[str, Any] = field(default_factory=dict)
    memory: FarmMemory | None = None
    idle_rss: int = 0

    @property
    def end_to_end(self) -> float:
        a, b = self.t.get("created"), self.t.get("finished")
        return b - a if a is not None and b is not None else float("nan")

    @property
    def steady(self) -> tuple[float, int]:
        """(seconds, frames) from the first frames recorded to the last."""
        if self.first_frames is None or self.last_frames is None or self.last_frames <= self.first_frames[0]:
            return float("nan"), 0
        return self.last_frames - self.first_frames[0], self.frames - self.first_frames[1]


class FarmSide:
    def __init__(self, home: Path, head: Any, model: Path, batch: int) -> None:
        import httpx
        import yaml

        from farm.bootstrap import create_org_with_admin
        from farm.embedded import EmbeddedFarm
        from farm.settings import Settings

        self.head_pid = head.pid
        self.registry = home.parent / "models.yaml"
        self.registry.write_text(yaml.safe_dump({"models": [
            {"name": MODEL, "kind": "diffusion", "source": str(model), "max_batch_size": batch}]}))
        self.settings = Settings(home=home, api={"port": free_port()}, ray={"dashboard_url": head.dashboard_url, "address": head.address},
                                 dispatch={"poll_s": 0.2}, models={"registry_file": self.registry})
        self.farm = EmbeddedFarm(self.settings, start_ray=False)
        self.farm.prepare()
        _, key = create_org_with_admin(self.farm.db, "restyle-bench")
        self.farm.start()
        self.api = httpx.Client(base_url=self.settings.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        self.project = self.api.post("/v1/projects", json={"name": "restyle"}).json()["id"]
        self.assets: dict[Path, tuple[str, float]] = {}

    def stop(self) -> None:
        self.api.close()
        self.farm.stop()

    def upload(self, path: Path) -> tuple[str, float]:
        if path not in self.assets:
            t = time.perf_counter()
            with path.open("rb") as fh:
                r = self.api.post(f"/v1/projects/{self.project}/assets", files={"file": (path.name, fh)})
            r.raise_for_status()
            self.assets[path] = (r.json()["id"], time.perf_counter() - t)
        return self.assets[path]

    def settle(self, timeout_s: float = 90) -> None:
        """Wait until the last job's processes are gone (its driver and actors outlive its end by seconds)."""
        import psutil

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                names = [process_name(p) for p in psutil.Process(self.head_pid).children(recursive=True)]
            except psutil.Error:
                return
            if not any(n == RUNNER or n.startswith(LEFTOVERS) for n in names):
                return
            time.sleep(1)

    def run(self, name: str, video: Path, spec: dict[str, Any], timeout_s: float, watch_memory: bool = False) -> JobRun:
        run = JobRun(name)
        asset, run.upload_s = self.upload(video)
        self.settle()
        if watch_memory:
            assert self.head_pid is not None
            run.memory = FarmMemory(self.head_pid)
            run.idle_rss = run.memory.sample()[0]
            run.memory.start()
        r = self.api.post("/v1/jobs", json={"kind": "video.restyle", "project_id": self.project,
                                            "spec": {"asset_ids": [asset], "model": MODEL, "prompt": PROMPT, **spec}})
        if r.status_code != 201:
            if run.memory is not None:
                run.memory.stop.set()
            run.ok, run.note = False, f"submit: {r.status_code} {r.text}"
            return run
        job = r.json()
        deadline = time.monotonic() + timeout_s
        while job["state"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(POLL_S)
            job = self.api.get(f"/v1/jobs/{job['id']}").json()
        seen = time.time()
        if run.memory is not None:
            run.memory.stop.set()
            run.memory.join()
        if job["state"] != "succeeded" or job["counts"]["failed"]:
            run.ok, run.note = False, f"job {job['id']} is {job['state']}: {job.get('error')} {job.get('counts')}"
            return run
        for asset_id in job["result_asset_ids"]:
            if self.api.get(f"/v1/assets/{asset_id}").json()["name"].endswith(".restyle.json"):
                run.report = self.api.get(f"/v1/assets/{asset_id}/content").json()
        run.frames = int(run.report.get("frames_rendered", 0))
        self._timeline(run, job["id"])
        run.t["seen"] = seen
        return run

    def _timeline(self, run: JobRun, job_id: str) -> None:
        """The job's moments from the database, as the tests read them: states, the runner, progress events."""
        from sqlalchemy import select

        from farm.db import Job, JobEvent

        with self.farm.db.session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            run.t = {"created": aware(job.created_at), "started": aware(job.started_at), "finished": aware(job.finished_at)}
            events = [(e.type, aware(e.created_at), dict(e.data)) for e in s.scalars(
                select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))]
        run.t["runner"] = next((at for kind, at, _ in events if kind == "runner"), None)
        progress = [(at, data) for kind, at, data in events if kind == "progress"]
        run.t["render"] = next((at for at, d in progress if d.get("phase") == "render"), None)
        frames = [(at, int(d["frames_rendered"])) for at, d in progress if "frames_rendered" in d]
        run.first_frames = next(((at, n) for at, n in frames if n > 0), None)  # type: ignore[misc]
        run.last_frames = next((at for at, n in frames if n >= run.frames > 0), None)


# --- report ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One side of the frames/s table."""

    name: str
    frames: int = 0
    calls: int = 0
    end_to_end: float = float("nan")  # seconds
    steady: float = float("nan")
    steady_frames: int = 0
    ok: bool = True
    note: str = ""

    def fps(self, span: str) -> float:
        if span == "steady":
            return self.steady_frames / self.steady if self.steady > 0 else float("nan")
        return self.frames / self.end_to_end if self.end_to_end > 0 else float("nan")


def peer_row(name: str, r: dict[str, Any] | None, mode: str, why: str) -> Row:
    if r is None or mode not in r:
        return Row(name, ok=False, note=why)
    m = r[mode]
    return Row(name, r["frames"], m["calls"], r["load_s"] + m["render_s"], m["after_first_s"], m["frames_after_first"])


def job_calls(report: dict[str, Any], batch: int, anchored: bool) -> int:
    """Engine calls the job made: each chunk in calls of ``batch`` rows, one of them the anchor when anchored."""
    per_call = batch - (1 if anchored else 0)
    return sum(math.ceil((c["end"] - c["start"]) / per_call) for c in report.get("chunks", []))


def job_row(run: JobRun, batch: int, anchored: bool) -> Row:
    if not run.ok:
        return Row(run.name, ok=False, note=run.note)
    seconds, frames = run.steady
    return Row(run.name, run.frames, job_calls(run.report, batch, anchored), run.end_to_end, seconds, frames)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def ratio(a: Row | None, b: Row | None, span: str) -> float:
    return a.fps(span) / b.fps(span) if a is not None and b is not None and a.ok and b.ok else float("nan")


def x(v: float) -> str:
    return "–" if math.isnan(v) else f"×{v:.2f}"


def report_speed(out: Any, args: argparse.Namespace, rows: dict[str, Row], jobs: dict[str, JobRun], diag: dict[str, Any] | None,
                 working: str) -> None:
    from rich.table import Table

    denoise = int(args.steps * args.strength)
    table = Table(title=f"frames/s: {args.frames} frames of {wxh(args.size)} at {FPS} fps, {MODEL} at {working}, {args.steps} steps × strength "
                        f"{args.strength:g} = {denoise} denoising steps a frame, guidance {GUIDANCE:g}, up to {args.batch} rows per engine call")
    for col in ("side", "frames", "engine calls", "end to end", "fps", "steady state", "fps"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for r in rows.values():
        if not r.ok:
            table.add_row(r.name, "[red]failed", *[""] * 5)
            continue
        table.add_row(r.name, f"{r.frames:,}", f"{r.calls:,}", f"{r.end_to_end:.1f} s", f"{r.fps('end_to_end'):.1f}",
                      f"{r.steady:.1f} s" if r.steady == r.steady else "–", f"{r.fps('steady'):.1f}")
    out.print(table)
    from pipelines.video_restyle import CHUNKS_PER_ENGINE, ENGINES

    out.print(f"farm: chunks of {args.chunk_size} frames, decode and encode tasks of 1 CPU, up to {ENGINES[1]} engine actors (one per {CHUNKS_PER_ENGINE} chunks, at most {ENGINES[0]} at the start) of "
              f"1 CPU (Ray: 1 torch thread each) on a head of 8 logical CPUs over {os.cpu_count()} cores; peers: one engine or pipeline.")
    out.print("end to end: farm job created -> finished (upload apart); peers engine or pipeline construction + rendering (imports and "
              "decoding excluded). steady state: farm first -> last progress event with frames rendered, only the frames in between; "
              "peers every call after the first. Engine calls are padded to the batch size, so a call costs a full batch however "
              "few frames it holds.")

    ratios = Table(title="ratios (frames/s over frames/s)")
    for col in ("", "steady state", "end to end", "target"):
        ratios.add_column(col, justify="left" if not col else "right")
    pairs = (("farm job / engine alone, consistency none (headline)", "job none", "engine none", "≥ ×0.80 steady"),
             ("farm job / engine alone, consistency anchor", "job anchor", "engine anchor", ""),
             ("farm job / engine alone with a thread per core, none", "job none", "engine cores", "(diagnostic)"),
             ("farm job / naive loop, none", "job none", "naive", ""),
             ("engine alone / naive loop (batching, one thread each)", "engine none", "naive", ""))
    for label, a, b, target in pairs:
        ra, rb = rows.get(a), rows.get(b)
        if ra is None or rb is None:
            continue
        steady = ratio(ra, rb, "steady")
        if target.startswith("≥"):
            target += " [green]met" if steady >= 0.8 else " [red]missed"
        ratios.add_row(label, x(steady), x(ratio(ra, rb, "end_to_end")), target)
    out.print(ratios)

    done = [j for j in jobs.values() if j.ok]
    if done:
        phases = Table(title="where the farm job's time goes")
        phases.add_column("phase")
        for j in done:
            phases.add_column(j.name, justify="right")
        spans = (("created -> dispatched (queue, claim)", "created", "started"),
                 ("dispatched -> runner up (Ray Job start, imports, database)", "started", "runner"),
                 ("runner up -> render starts (probe, shot detection, plan)", "runner", "render"),
                 ("render starts -> first frames recorded (Ray Data start, engine actors load, first chunks)", "render", "first"),
                 ("first -> last frames recorded (steady state)", "first", "last"),
                 ("last frames -> finished (join and mux, contact sheet, report, outputs)", "last", "finished"),
                 ("finished -> client saw it (poll every 0.25 s)", "finished", "seen"))
        for label, a, b in spans:
            cells = []
            for j in done:
                moments = {**j.t, "first": j.first_frames[0] if j.first_frames else None, "last": j.last_frames}
                p, q = moments.get(a), moments.get(b)
                cells.append(f"{q - p:.1f} s" if p is not None and q is not None else "–")
            phases.add_row(label, *cells)
        phases.add_row("upload (before the job; not in end to end)", *[f"{j.upload_s:.1f} s" for j in done])
        out.print(phases)

        inside = Table(title="inside the job: its engines (from <video>.restyle.json) against the engine alone")
        inside.add_column("")
        for j in done:
            inside.add_column(j.name, justify="right")
        cells: dict[str, list[str]] = {k: [] for k in ("engines", "chunks", "busy", "rate", "alone", "flicker")}
        for key, j in jobs.items():
            if not j.ok:
                continue
            chunks = j.report.get("chunks", [])
            busy = sum(c.get("render_s") or 0.0 for c in chunks)
            alone = rows.get("engine " + key.removeprefix("job "))
            cells["engines"].append(str(len({c["worker"] for c in chunks})))
            cells["chunks"].append(f"{len(chunks)} (chunk_size {args.chunk_size})")
            cells["busy"].append(f"{busy:.1f} s")
            cells["rate"].append(f"{j.frames / busy:.1f}" if busy else "–")
            cells["alone"].append(f"{alone.frames / engine_render_s(alone, diag, key):.1f}" if alone and alone.ok else "–")
            cells["flicker"].append(str(j.report.get("flicker")))
        for label, key in (("engines that rendered (distinct worker processes)", "engines"), ("chunks", "chunks"),
                           ("engine time, summed over chunks (render_s)", "busy"),
                           ("frames per engine-second inside the job", "rate"),
                           ("frames per second of the engine alone, one thread, all calls", "alone"),
                           ("flicker (report)", "flicker")):
            inside.add_row(label, *cells[key])
        out.print(inside)

    if diag is not None:
        n = diag["frames"]
        dec, enc = diag["decode_cpu_s"] / n, diag.get("encode_cpu_s", float("nan")) / n
        eng = diag["none"]["render_s"] / n
        cores = os.cpu_count() or 1
        out.print(f"the stages around the engine, one core each, as the job runs them (in the engine's subprocess): decode "
                  f"{diag['decode_s']:.1f} s ({dec * 1000:.1f} ms CPU a frame: {diag['chunks']} chunks, each opened, seeked and decoded "
                  f"with its shot's anchor), encode {diag.get('encode_s', float('nan')):.1f} s ({enc * 1000:.1f} ms CPU a frame: checksums, "
                  f"differences, scale to {wxh(args.size)} and H.264 CRF {CRF} {PRESET}); engine alone {eng * 1000:.1f} ms a frame on one thread. "
                  f"If every core did nothing else: at most {cores / (dec + enc + eng):.1f} frames/s on {cores} cores.")


def engine_render_s(row: Row, diag: dict[str, Any] | None, key: str) -> float:
    """The engine alone's rendering time for all the frames (every call, the first included)."""
    mode = key.removeprefix("job ")
    if diag is not None and mode in diag:
        return float(diag[mode]["render_s"])
    return row.steady * row.frames / row.steady_frames if row.steady_frames else float("nan")


def report_memory(out: Any, args: argparse.Namespace, runs: dict[str, JobRun], sources: dict[str, Path]) -> None:
    from rich.table import Table

    w, h = args.memory_size
    table = Table(title=f"peak memory of the whole farm: RSS of this process (embedded API + dispatcher) + every process of the Ray head, "
                        f"every {RSS_PERIOD_S} s; {w}x{h} {FPS} fps sources, short side {MEMORY_SPEC['short_side']}, "
                        f"{MEMORY_SPEC['steps']} step at strength {MEMORY_SPEC['strength']:g}, consistency none, output at the working size")
    for col in ("source", "frames", "file", "job end to end", "fps", "samples", "idle before", "peak", "peak - idle",
                "processes at peak", "largest process at peak"):
        table.add_column(col, justify="left" if col in ("source", "largest process at peak") else "right")
    for key, run in runs.items():
        size = sources[key].stat().st_size
        label = f"{key}, {run.frames / FPS:g} s" if run.frames else key
        if not run.ok or run.memory is None:
            table.add_row(label, "[red]failed", *[""] * 9)
            continue
        m = run.memory
        table.add_row(label, f"{run.frames:,}", f"{size / 2**20:,.1f} MiB", f"{run.end_to_end:.0f} s",
                      f"{run.frames / run.end_to_end:.1f}", f"{m.samples:,}", mib(run.idle_rss), mib(m.peak), mib(m.peak - run.idle_rss),
                      str(m.peak_processes), f"{m.largest[1]} {mib(m.largest[0])}")
    out.print(table)
    out.print("sources: " + ", ".join(f"{key} {path}" for key, path in sources.items()))
    long, short = runs.get("long"), runs.get("short")
    if long and short and long.ok and short.ok and long.memory and short.memory and short.memory.peak:
        r = long.memory.peak / short.memory.peak
        grow = (long.memory.peak - long.idle_rss) / max(1, short.memory.peak - short.idle_rss)
        met = "[green]met" if r <= 1.5 else "[red]missed"
        out.print(f"peak {long.frames / FPS:g} s / peak {short.frames / FPS:g} s = ×{r:.2f} (target ≤ ×1.5: {met}[/]); the jobs' own share "
                  f"(peak - idle) ×{grow:.2f}; the long source is ×{long.frames / short.frames:.1f} the frames")


# --- main --------------------------------------------------------------------------------------------------


def wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def size_arg(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def versions() -> str:
    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    return f"torch {v('torch')}, diffusers {v('diffusers')}, ray {v('ray')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=240, help="frames of the frames/s source (default 240)")
    parser.add_argument("--size", type=size_arg, default=(640, 360), help="frames/s source size WxH (default 640x360)")
    parser.add_argument("--short-side", type=int, default=128, help="working short side (default 128)")
    parser.add_argument("--steps", type=int, default=4, help="diffusion steps (default 4)")
    parser.add_argument("--strength", type=float, default=1.0, help="img2img strength (default 1.0: steps × 1.0 denoising steps)")
    parser.add_argument("--batch", type=int, default=8, help="max_batch_size of the registry entry (default 8)")
    parser.add_argument("--chunk-size", type=int, default=16, help="the job's chunk_size (default 16, the spec's default)")
    parser.add_argument("--peer-threads", type=int, default=None, help="torch threads of the engine alone and the naive loop "
                        "(default: the registry entry's cpus, what Ray gives one engine actor)")
    parser.add_argument("--long-s", type=float, default=300, help="seconds of the long memory source (default 300)")
    parser.add_argument("--short-s", type=float, default=30, help="seconds of the short memory source (default 30)")
    parser.add_argument("--memory-size", type=size_arg, default=(1920, 1080), help="memory sources' size WxH (default 1920x1080)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory figure")
    parser.add_argument("--skip-speed", action="store_true", help="skip the frames/s figure")
    parser.add_argument("--media-dir", type=Path, default=REPO / ".farm" / "bench-media", help="where generated sources are kept")
    parser.add_argument("--timeout-s", type=float, default=3600, help="give up on a job after this long")
    parser.add_argument("--worker", choices=("engine", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        params = json.loads(Path(args.params).read_text())
        result = worker_engine(params) if args.worker == "engine" else worker_naive(params)
        print("BENCH_RESULT " + json.dumps(result), flush=True)
        return 0

    import psutil
    from rich.console import Console

    from cluster.local import LocalRayHead
    from serve.demo_models import build_demo_models
    from serve.registry import ModelRegistry

    err = Console(stderr=True)
    out = Console(width=None if sys.stdout.isatty() else 180)
    started = time.monotonic()
    loads = [("before", os.getloadavg())]
    cache = Path(os.environ.get("FARM_TEST_MODEL_CACHE") or REPO / ".farm" / "test-models")
    model = build_demo_models(cache)[MODEL]
    args.media_dir.mkdir(parents=True, exist_ok=True)
    speed_src = None if args.skip_speed else cached_video(args.media_dir, "speed", args.size, speed_shots(args.frames), err.log)
    memory_src: dict[str, Path] = {}
    if not args.skip_memory:
        for key, seconds in (("short", args.short_s), ("long", args.long_s)):
            # A keyframe every 2 s and x264 ultrafast: cheap to make (minutes at 1080p) and to seek in.
            memory_src[key] = cached_video(args.media_dir, "memory", args.memory_size, memory_shots(round(seconds * FPS)), err.log,
                                           gop=2 * FPS, preset="ultrafast")
    spec = {"short_side": args.short_side, "steps": args.steps, "strength": args.strength, "chunk_size": args.chunk_size,
            "guidance_scale": GUIDANCE, "seed": SEED, "crf": CRF, "preset": PRESET, "output_size": "source"}

    out.print(f"[bold]video.restyle[/] against the diffusion engine alone and a naive diffusers loop; model {MODEL} ({model})")
    out.print(f"machine: {os.cpu_count()} cores ({cpu_model()}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
              f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, {versions()}; Ray head with 8 logical CPUs; "
              f"farm on SQLite; load average {' '.join(f'{v:.1f}' for v in loads[0][1])} (1, 5, 15 min) before")

    rows: dict[str, Row] = {}
    jobs: dict[str, JobRun] = {}
    memory: dict[str, JobRun] = {}
    diag: dict[str, Any] | None = None
    working = "?"
    with LocalRayHead(num_cpus=8) as head, tempfile.TemporaryDirectory(prefix="farm-restyle-bench-") as tmp:
        farm = FarmSide(Path(tmp) / "home", head, model, args.batch)
        entry = ModelRegistry.from_yaml(farm.registry).get(MODEL)
        threads = args.peer_threads or max(1, int(entry.cpus))
        cores = os.cpu_count() or 1
        try:
            if speed_src is not None:
                params = {"video": str(speed_src), "registry": str(farm.registry), "model": str(model), "spec": {**spec, "prompt": PROMPT}}
                err.log(f"engine alone ({threads} thread): {args.frames} frames, consistency none then anchor; decode and encode timed apart")
                diag, why = run_worker("engine", {**params, "modes": ["none", "anchor"], "diagnose": True}, threads, Path(tmp))
                rows["engine none"] = peer_row(f"engine alone, none ({threads} thread{'s' * (threads > 1)})", diag, "none", why)
                rows["engine anchor"] = peer_row(f"engine alone, anchor ({threads} thread{'s' * (threads > 1)})", diag, "anchor", why)
                loads.append(("after the engine alone", os.getloadavg()))
                for mode in ("none", "anchor"):
                    err.log(f"farm: video.restyle job, consistency {mode}")
                    jobs[f"job {mode}"] = farm.run(f"farm job, {mode}", speed_src, {**spec, "consistency": mode}, args.timeout_s)
                    rows[f"job {mode}"] = job_row(jobs[f"job {mode}"], args.batch, mode == "anchor")
                    loads.append((f"after the job ({mode})", os.getloadavg()))
                if jobs["job none"].ok:
                    working = "x".join(str(v) for v in jobs["job none"].report.get("working_size") or ()) or "?"
                if cores != threads:
                    err.log(f"engine alone ({cores} threads): consistency none")
                    r, why = run_worker("engine", {**params, "modes": ["none"]}, cores, Path(tmp))
                    rows["engine cores"] = peer_row(f"engine alone, none ({cores} threads, one per core)", r, "none", why)
                    loads.append(("after the engine alone, all cores", os.getloadavg()))
                err.log(f"naive diffusers loop ({threads} thread): batch 1")
                r, why = run_worker("naive", {**params, "modes": ["none"]}, threads, Path(tmp))
                rows["naive"] = peer_row(f"naive img2img loop, batch 1 ({threads} thread{'s' * (threads > 1)})", r, "none", why)
                loads.append(("after the naive loop", os.getloadavg()))
            for key, path in memory_src.items():
                err.log(f"farm: memory, {key} source {path.name}")
                memory[key] = farm.run(f"memory {key}", path, {**MEMORY_SPEC}, args.timeout_s, watch_memory=True)
                loads.append((f"after memory ({key})", os.getloadavg()))
        finally:
            farm.stop()

    order = ("job none", "job anchor", "engine none", "engine anchor", "engine cores", "naive")
    if rows:
        report_speed(out, args, {k: rows[k] for k in order if k in rows}, jobs, diag, working)
    if memory:
        report_memory(out, args, memory, memory_src)
    out.print("load average (1 min): " + ", ".join(f"{label} {v[0]:.1f}" for label, v in loads))
    out.print(f"benchmark took {time.monotonic() - started:.0f} s in all")
    failed = [r for r in rows.values() if not r.ok] + [m for m in memory.values() if not m.ok]
    for f in failed:
        out.print(f"[red]{f.name}: {f.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
