"""Batch throughput of two revisions of the farm, side by side: `batch.chat` and `batch.images`.

    .venv/bin/python benchmarks/batch_revisions.py --before REV [--after REV] [--rounds 3] [--chat 1000] [--images 48]

A restructuring must not cost throughput. This script checks out ``--before``
(and ``--after``, default: this working tree) as git worktrees and runs the
same two OpenAI batches against each, in alternating order (before, after;
then after, before; ...), so a machine that drifts during the run costs both
sides alike. Every run is a fresh process with the revision first on
``sys.path``: its own Ray head (``LocalRayHead(num_cpus=8)``), its own
embedded control plane on SQLite, the same tiny demo models (built once into
the shared model cache), and the official ``openai`` client submitting

* a chat batch of ``--chat`` requests (``tiny-llama``, ``max_tokens``
  ``--max-tokens``, greedy), then
* an image batch of ``--images`` requests (``tiny-sd``, 64x64, 4 steps).

Only the public API is used (files, batches) and the job's progress events
read from its database, so both revisions are measured the same way whatever
changed inside. Per batch two figures:

steady
    requests per second between the first and the last progress event that
    counted finished requests: engine running, results streaming.
runner
    requests per second from ``in_progress_at`` to ``finalizing_at``
    (engine start-up included).

The summary prints the median of the per-round after/before ratios for each
batch and figure (target: steady >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHAT_MODEL, IMAGE_MODEL = "tiny-llama", "tiny-sd"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worktree(rev: str, root: Path) -> Path:
    """A detached checkout of ``rev`` (reused if it exists)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True, text=True).stdout.strip()
    path = root / f"farm-{sha[:12]}"
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha], check=True, capture_output=True)
    return path


# -- one run, inside the revision under test ---------------------------------------------------


def progress_rate(db_path: Path, job_id: str) -> float:
    """Requests per second between the first and last progress event that counted finished requests."""
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(db_path) as con:
        rows = con.execute("SELECT created_at, data FROM job_events WHERE job_id = ? AND type = 'progress' ORDER BY seq", (job_id,)).fetchall()
    points: list[tuple[float, int]] = []
    for created, data in rows:
        fields = json.loads(data) if isinstance(data, str) else data
        done = int(fields.get("succeeded", 0)) + int(fields.get("failed", 0))
        if done and (not points or done > points[-1][1]):
            points.append((datetime.fromisoformat(str(created)).timestamp(), done))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return float("nan")
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def run_batch(client: Any, db_path: Path, endpoint: str, lines: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    body = "".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": endpoint, "body": b}) + "\n" for i, b in enumerate(lines))
    f = client.files.create(file=("requests.jsonl", body.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h")
    deadline = time.monotonic() + timeout_s
    while batch.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.25)
        batch = client.batches.retrieve(batch.id)
    counts = batch.request_counts
    if batch.status != "completed" or counts is None or counts.failed:
        raise RuntimeError(f"batch {batch.id} is {batch.status} ({counts}): {batch.errors}")
    job_id = getattr(batch, "job_id")  # the farm's extra field on the OpenAI batch object
    runner_s = float(batch.finalizing_at - batch.in_progress_at) if batch.finalizing_at and batch.in_progress_at else float("nan")
    return {"requests": len(lines), "steady": progress_rate(db_path, job_id), "runner": len(lines) / runner_s if runner_s > 0 else float("nan")}


def worker(args: argparse.Namespace) -> None:
    """One revision: a Ray head, an embedded farm, the two batches; prints one JSON line."""
    import yaml
    from openai import OpenAI

    from cluster.local import LocalRayHead
    from farm.bootstrap import create_org_with_admin
    from farm.embedded import EmbeddedFarm
    from farm.settings import Settings

    models = json.loads(args.models)
    with tempfile.TemporaryDirectory(prefix="batch-rev-") as tmp, LocalRayHead(num_cpus=8) as head:
        home = Path(tmp) / "farm"
        registry = Path(tmp) / "models.yaml"
        registry.write_text(yaml.safe_dump({"models": [
            {"name": CHAT_MODEL, "kind": "llm", "source": models[CHAT_MODEL], "engine_kwargs": json.loads(args.llm_kwargs)},
            {"name": IMAGE_MODEL, "kind": "diffusion", "source": models[IMAGE_MODEL]},
        ]}))
        settings = Settings(home=home, api={"port": free_port()}, ray={"dashboard_url": head.dashboard_url, "address": head.address},
                            dispatch={"poll_s": 0.2}, models={"registry_file": registry})
        farm = EmbeddedFarm(settings, start_ray=False)
        farm.prepare()
        _, key = create_org_with_admin(farm.db, "revisions")
        farm.start()
        try:
            client = OpenAI(base_url=f"{settings.base_url}/v1", api_key=key, max_retries=0, timeout=300)
            db_path = Path(settings.db.url.removeprefix("sqlite:///"))
            chat = [{"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Shot {i}: describe a quiet studio at the edge of town"}],
                     "max_tokens": args.max_tokens, "temperature": 0} for i in range(args.chat)]
            images = [{"model": IMAGE_MODEL, "prompt": f"storyboard frame {i}", "size": "64x64", "steps": 4, "seed": i} for i in range(args.images)]
            result = {"chat": run_batch(client, db_path, "/v1/chat/completions", chat, args.timeout_s),
                      "images": run_batch(client, db_path, "/v1/images/generations", images, args.timeout_s)}
        finally:
            farm.stop()
    print("RESULT " + json.dumps(result), flush=True)


# -- the comparison -----------------------------------------------------------------------------


def run_side(tree: Path, args: argparse.Namespace, models: dict[str, str], llm_kwargs: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--chat", str(args.chat), "--images", str(args.images),
           "--max-tokens", str(args.max_tokens), "--timeout-s", str(args.timeout_s), "--models", json.dumps(models),
           "--llm-kwargs", json.dumps(llm_kwargs)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(f"run in {tree} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", default="HEAD", help="git revision measured as 'before'")
    parser.add_argument("--after", default=None, help="git revision measured as 'after' (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs, alternating order (default 3)")
    parser.add_argument("--chat", type=int, default=1000, help="chat requests per run (default 1,000)")
    parser.add_argument("--images", type=int, default=48, help="image requests per run (default 48)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--llm-kwargs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    sys.path.insert(0, str(REPO))
    from serve.demo_models import build_demo_models
    from serve.demo import DEMO_LLM_ENGINE_KWARGS

    cache = Path(os.environ.get("FARM_TEST_MODEL_CACHE") or REPO / ".farm" / "test-models")
    models = {k: str(v) for k, v in build_demo_models(cache).items()}
    root = Path(tempfile.gettempdir())
    trees = {"before": worktree(args.before, root), "after": worktree(args.after, root) if args.after else REPO}
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; before = {args.before} ({trees['before']}), after = {args.after or 'working tree'}")
    print(f"per run: {args.chat:,} chat requests (max_tokens {args.max_tokens}), {args.images} images (64x64, 4 steps)\n")
    ratios: dict[tuple[str, str], list[float]] = {}
    print(f"{'round':>5}  {'side':<6}  {'chat steady':>11}  {'chat runner':>11}  {'img steady':>10}  {'img runner':>10}   (requests/s)")
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        got = {}
        for side in order:
            got[side] = run_side(trees[side], args, models, DEMO_LLM_ENGINE_KWARGS)
            g = got[side]
            print(f"{r + 1:>5}  {side:<6}  {g['chat']['steady']:>11.2f}  {g['chat']['runner']:>11.2f}  "
                  f"{g['images']['steady']:>10.2f}  {g['images']['runner']:>10.2f}", flush=True)
        for batch in ("chat", "images"):
            for figure in ("steady", "runner"):
                ratios.setdefault((batch, figure), []).append(got["after"][batch][figure] / got["before"][batch][figure])
    print("\nafter / before, median of the per-round ratios (target: steady >= 0.95)")
    for (batch, figure), values in ratios.items():
        print(f"  {batch:<7} {figure:<7} x{statistics.median(values):.2f}   rounds: {', '.join(f'x{v:.2f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
