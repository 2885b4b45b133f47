"""Cluster: Ray nodes and Serve applications, with a link to the Ray dashboard for logs and details."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from farm.api.deps import RuntimeDep
from farm.ui.auth import UiUserDep
from farm.ui.cluster import read_cluster
from farm.ui.web import render

router = APIRouter()


@router.get("/cluster")
async def cluster_page(request: Request, _: UiUserDep, rt: RuntimeDep) -> Response:
    view = await run_in_threadpool(read_cluster, rt.settings.ray.dashboard_url)
    link = rt.settings.ui.ray_dashboard_link or rt.settings.ray.dashboard_url
    return render(request, "cluster.html", cluster=view, dashboard_link=link)
