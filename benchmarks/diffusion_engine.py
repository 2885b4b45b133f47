"""The diffusion engine alone, on whatever device it finds: batching speed-up and batch invariance.

    .venv/bin/python benchmarks/diffusion_engine.py [--model DIR] [--device cuda|cpu] [--dtype float16]
                                                   [--size 64] [--steps 4] [--batch 16] [--rounds 3]

`serving.py` measures batching through Ray Serve on this machine's CPU; this
script measures the engine underneath it (``serve.diffusion.engine.DiffusersEngine``,
the same code a GPU replica runs) with no Serve in between, so it also runs on
a GPU box that has only torch, diffusers and pydantic. It prints:

1. images/s rendering ``--batch`` images as one padded pipeline call vs
   ``--batch`` calls of one image each (best of ``--rounds``, after a warm-up);
2. whether every image is bit-identical whether its seed is rendered alone or
   inside a batch with other seeds (the engine pads every call to one shape
   for this; see its docstring), compared on the PNG bytes.

The model defaults to the tiny random-weight demo pipeline in
``.farm/test-models/tiny-sd`` (built there if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / ".farm" / "test-models" / "tiny-sd")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default=None, help="torch dtype to load the pipeline in, e.g. float16")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from serve.diffusion.engine import DiffusersEngine
    from serve.diffusion.protocol import ImageJob

    if not (args.model / "model_index.json").exists():
        from serve.demo_models import build_demo_models

        args.model = Path(build_demo_models(args.model.parent)[args.model.name])
    options: dict[str, object] = {}
    if args.device:
        options["device"] = args.device
    if args.dtype:
        options["torch_dtype"] = args.dtype
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, model {args.model.name}, {args.size}x{args.size}, "
          f"{args.steps} steps, dtype {args.dtype or 'float32'}")

    def job(seed: int) -> ImageJob:
        return ImageJob(prompt=f"a lighthouse at dusk, shot {seed}", negative_prompt=None, width=args.size,
                        height=args.size, steps=args.steps, guidance_scale=7.5, seed=seed)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    async def run() -> int:
        batched = DiffusersEngine(str(args.model), dict(options), max_batch_size=args.batch)
        single = DiffusersEngine(str(args.model), dict(options), max_batch_size=1)
        await batched.start()
        await single.start()
        jobs = [job(1000 + i) for i in range(args.batch)]
        await batched.generate(jobs)  # warm-up: kernels chosen, caches filled
        await single.generate(jobs[:1])
        best = {"batched": float("inf"), "single": float("inf")}
        for _ in range(args.rounds):
            sync()
            t = time.perf_counter()
            await batched.generate(jobs)
            sync()
            best["batched"] = min(best["batched"], time.perf_counter() - t)
            t = time.perf_counter()
            for j in jobs:
                await single.generate([j])
            sync()
            best["single"] = min(best["single"], time.perf_counter() - t)
        b, s = args.batch / best["batched"], args.batch / best["single"]
        print(f"1. images/s: one call of {args.batch} {b:8.1f}   {args.batch} calls of 1 {s:8.1f}   ratio x{b / s:.2f}")

        # The same seeds alone (padded to the batch shape) and mixed with others, in another order.
        alone = [(await batched.generate([j]))[0] for j in jobs[:4]]
        mixed = await batched.generate([job(7), jobs[2], job(8), jobs[0], jobs[3], jobs[1]])
        together = {0: mixed[3], 1: mixed[5], 2: mixed[1], 3: mixed[4]}
        same = [alone[i] == together[i] for i in range(4)]
        digests = ", ".join(hashlib.sha256(alone[i]).hexdigest()[:10] for i in range(4))
        print(f"2. batch invariance: {sum(same)}/4 seeds bit-identical alone and in a mixed batch ({digests})")
        return 0 if all(same) else 1

    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
