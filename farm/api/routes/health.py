"""Liveness, readiness and metrics: unauthenticated, for orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from farm.api.deps import RuntimeDep
from farm.api.metrics import metrics_endpoint
from farm.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(rt: RuntimeDep) -> JSONResponse:
    def probe() -> dict[str, dict[str, object]]:
        checks: dict[str, dict[str, object]] = {}
        for name, fn in (("database", rt.db.ping), ("object_store", rt.store.check)):
            try:
                fn()
                checks[name] = {"ok": True}
            except Exception as exc:
                checks[name] = {"ok": False, "detail": str(exc)[:300]}
        ok, detail = rt.ray_status()
        checks["ray"] = {"ok": ok, "detail": detail}
        return checks

    checks = await run_in_threadpool(probe)
    ready = all(c["ok"] for c in checks.values())
    body = Health(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=True, tags=["health"])
