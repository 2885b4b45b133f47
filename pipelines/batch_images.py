"""`batch.images`: OpenAI batch of image generations, rendered by the diffusion engine
in a Ray Data actor pool; each image is stored as an asset of the batch's project and
the output line carries its id and URL.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

from pipelines.batch_common import BatchRun, error_line, output_line, ray_init, run_batch
from pipelines.context import JobContext


def parse_size(size: Any) -> tuple[int | None, int | None]:
    if size in (None, "auto"):
        return None, None
    w, _, h = str(size).partition("x")
    return int(w), int(h)


class Renderer:
    """One diffusion engine per actor; renders a block of requests and stores the images."""

    def __init__(self, source: str, engine_kwargs: dict[str, Any], project_id: str, key_id: str, org_id: str) -> None:
        from farm.accounts import Principal
        from farm.db import Database, Role
        from farm.settings import Settings
        from farm.storage import open_store
        from serve.diffusion.engine import DiffusersEngine

        self.settings = Settings()
        self.db = Database(self.settings.db.url)
        self.store = open_store(self.settings)
        self.actor = Principal(key_id=key_id, org_id=org_id, role=Role.member)
        self.project_id = project_id
        self.engine = DiffusersEngine(source, engine_kwargs)
        asyncio.run(self.engine.start())

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from serve.diffusion.protocol import ImageLimits, ImageRequest, InvalidRequest, group_compatible

        out: dict[str, list[Any]] = {"line": [], "custom_id": [], "model": [], "asset_ids": [], "error": [], "seconds": []}
        for line, cid, raw in zip(batch["line"], batch["custom_id"], batch["body"], strict=True):
            body = json.loads(raw)
            start = time.perf_counter()
            try:
                width, height = parse_size(body.get("size"))
                req = ImageRequest(prompt=body["prompt"], n=int(body.get("n", 1)), width=width, height=height,
                                   seed=body.get("seed"), steps=body.get("steps"), negative_prompt=body.get("negative_prompt"))
                req.check(ImageLimits())
                jobs = req.jobs(self.engine.defaults)
                pngs: list[bytes] = [b""] * len(jobs)
                for group in group_compatible(jobs):
                    rendered = asyncio.run(self.engine.generate([jobs[i] for i in group]))
                    for i, png in zip(group, rendered, strict=True):
                        pngs[i] = png
                ids, error = [self._store(f"{cid}-{i}.png", png) for i, png in enumerate(pngs)], None
            except (InvalidRequest, ValueError, KeyError) as exc:
                ids, error = [], f"{getattr(exc, 'param', 'body')}: {exc}"
            out["line"].append(int(line))
            out["custom_id"].append(cid)
            out["model"].append(body.get("model"))
            out["asset_ids"].append(json.dumps(ids))
            out["error"].append(error)
            out["seconds"].append(time.perf_counter() - start)
        return out

    def _store(self, name: str, png: bytes) -> str:
        from farm import assets as asset_service
        from farm.db import Project

        with self.db.session() as s:
            project = s.get(Project, self.project_id)
            assert project is not None
            return asset_service.ingest(s, self.store, self.actor, project, name, io.BytesIO(png), limit=len(png) + 1).asset.id


def to_line(base_url: str) -> Any:
    def convert(row: dict[str, Any]) -> tuple[bool, str]:
        if row.get("error"):
            return False, error_line(row["custom_id"], "invalid_request", str(row["error"])[:1000])
        ids = json.loads(row["asset_ids"])
        data = [{"url": f"{base_url}/v1/assets/{a}/content", "asset_id": a, "revised_prompt": None} for a in ids]
        return True, output_line(row["custom_id"], {"created": int(time.time()), "data": data,
                                                     "usage": {"images": len(ids), "seconds": round(row["seconds"], 3)}})

    return convert


def run(ctx: JobContext) -> None:
    from serve.registry import ModelRegistry

    registry = ModelRegistry.from_settings(ctx.settings)
    models = {m.name for m in registry.of_kind("diffusion")}

    def execute(batch: BatchRun, requests: Path) -> None:
        import ray.data

        ray_init()
        with ctx.db.session() as s:
            job = ctx.job(s)
            owner = (job.project_id, job.submitted_by or "", job.org_id)
        ds = ray.data.read_json(f"local://{requests}", lines=True)
        used = {json.loads(json.loads(line)["body"])["model"] for line in requests.open()}
        for name in sorted(used):
            spec = registry.get(name)
            subset = ds.filter(lambda r, n=name: json.loads(r["body"])["model"] == n)
            rendered = subset.map_batches(
                Renderer, fn_constructor_args=(spec.source, dict(spec.engine_kwargs), *owner),
                batch_size=4, concurrency=(1, 2), num_cpus=1, num_gpus=spec.gpus or 0,
            )
            batch.consume(rendered.iter_rows(), to_line(ctx.settings.base_url))

    run_batch(ctx, models, execute)
