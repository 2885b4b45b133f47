"""Render images on the diffusion deployment; store them as assets when a URL is asked for.

A ``url`` answer is a presigned link to a PNG stored as an asset of the
caller's project (``X-Farm-Project``, else the org's default project), so the
image is tracked like any other asset and only that org can see it by id.
``b64_json`` answers carry the PNG inline and store nothing.
"""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import timedelta
from typing import Any

from fastapi import Response
from fastapi.concurrency import run_in_threadpool

from farm import assets as asset_service
from farm.api.routes.openai.deps import Caller, default_project
from farm.api.routes.openai.state import Generation
from farm.api.runtime import Runtime
from farm.db.models import Project
from farm.openai.images import ImageData, ImageGenerationRequest
from farm.usage import Usage


async def render(gen: Generation, rt: Runtime, caller: Caller, request: ImageGenerationRequest, endpoint: str,
                 **edit: Any) -> Response:
    """The images answer (``ImagesResponse``), serialized here: base64 images pass through as strings.

    ``edit`` holds an edit's input image and strength (see ``ImageGenerationRequest.diffusion_body``).
    """
    from serve.config import diffusion_route  # farm never imports serve at module load

    spec = gen.model(request.model, "diffusion")
    project: Project | None = None
    if request.response_format == "url":  # settle where images go before spending replica time
        project = await run_in_threadpool(_target_project, rt, caller, gen.settings.serve.default_project)
    upstream = await gen.serve.post(f"{diffusion_route(spec.name)}/generate", request.diffusion_body(**edit))
    result = upstream.json()
    images: list[dict[str, Any]] = result["data"]
    if project is not None:
        data = [d.model_dump(exclude_none=True) for d in await run_in_threadpool(_store, rt, caller, project, spec.name, images)]
    else:
        data = [{"b64_json": img["b64_png"], "seed": img["seed"]} for img in images]
    gen.usage.record(
        Usage(
            org_id=caller.principal.org_id,
            key_id=caller.principal.key_id,
            project_id=project.id if project is not None else caller.project_id,
            endpoint=endpoint,
            model=spec.name,
            images=len(data),
            replica_seconds=float(result.get("replica_seconds") or 0.0),
        )
    )
    body = {"created": int(time.time()), "model": spec.name, "data": data}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _target_project(rt: Runtime, caller: Caller, default_name: str) -> Project:
    if caller.project_id is not None:
        with rt.db.session() as session:
            project = session.get(Project, caller.project_id)
        if project is not None:
            return project
    return default_project(rt.db, caller.principal, default_name)


def _store(rt: Runtime, caller: Caller, project: Project, model: str, images: list[dict[str, Any]]) -> list[ImageData]:
    expiry = timedelta(seconds=rt.settings.storage.presign_expiry_s)
    out: list[ImageData] = []
    with rt.db.session() as session:
        for img in images:
            png = base64.b64decode(img["b64_png"])
            name = f"{model}-{img['seed']}.png"
            result = asset_service.ingest(session, rt.store, caller.principal, project, name, io.BytesIO(png), limit=len(png))
            asset = result.asset
            url = rt.store.presigned_get_url(asset.object_key, expiry, download_name=asset.name)
            out.append(ImageData(url=url, asset_id=asset.id, seed=img["seed"]))
    return out
