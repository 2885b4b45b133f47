"""The dashboard's routes, one module per page family, mounted under /ui with their static files."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from farm.ui.routes import batches, cluster, jobs, projects, signin, usage, webhooks
from farm.ui.web import STATIC_DIR, install_handlers, redirect

router = APIRouter(prefix="/ui", include_in_schema=False)
for module in (signin, jobs, projects, batches, usage, cluster, webhooks):
    router.include_router(module.router)


@router.get("")
@router.get("/")
def home() -> Response:
    return redirect("/ui/jobs")


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and their error pages on the control plane's app."""
    install_handlers(app)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
