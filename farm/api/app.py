"""The control plane's FastAPI app: the farm's one front door."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from farm.api import errors
from farm.api.admission import AdmissionGate
from farm.api.metrics import Metrics, MetricsMiddleware
from farm.api.routes import assets, audit, health, jobs, keys, objects, projects, webhooks, workflows
from farm.api.routes.openai import ROUTERS as OPENAI_ROUTERS
from farm.api.routes.openai import Generation
from farm.api.runtime import Runtime
from farm.db import Database
from farm.settings import Settings, get_settings
from farm.storage import ObjectStore, open_store
from farm.ui import routes as ui
from kinds import load as load_kinds


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    store: ObjectStore | None = None,
    migrate: bool = True,
) -> FastAPI:
    settings = settings or get_settings()
    load_kinds(settings.extra_kinds)  # a kind module that does not import stops the start, not the first job
    runtime = Runtime(settings=settings, db=db or Database.of(settings.db), store=store or open_store(settings))
    generation = Generation(settings, runtime.db)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await run_in_threadpool(runtime.db.upgrade)
        await run_in_threadpool(runtime.store.ensure_ready)
        dispatcher = None
        if settings.dispatch.enabled and settings.ray.dashboard_url:
            from farm.dispatch import Dispatcher

            dispatcher = Dispatcher(runtime.db, settings)
            dispatcher.start()
        deliveries = None
        if settings.webhooks.enabled:
            from farm.webhooks.delivery import DeliveryWorker

            deliveries = DeliveryWorker(runtime.db, settings.webhooks)
            deliveries.start()
        await generation.start()
        yield
        await generation.stop()
        if deliveries is not None:
            await run_in_threadpool(deliveries.stop)
        if dispatcher is not None:
            await run_in_threadpool(dispatcher.stop)

    app = FastAPI(
        title="StoryCore Farm",
        version="0.1.0",
        description="Control plane of the StoryCore render farm: organizations, keys, projects, assets and jobs; and an OpenAI-compatible generation API (chat, completions, images) served by Ray Serve.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.generation = generation
    app.state.metrics = Metrics()
    if settings.api.max_concurrent_requests:  # inside the metrics: a request's wait for its turn counts in its latency
        app.add_middleware(AdmissionGate, limit=settings.api.max_concurrent_requests, wait_s=settings.api.admission_wait_s)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    errors.install(app)
    for module in (health, keys, projects, assets, jobs, audit, objects, webhooks, workflows):
        app.include_router(module.router)
    for router in OPENAI_ROUTERS:
        app.include_router(router)
    ui.install(app)  # the web dashboard under /ui (HTML, kept out of the OpenAPI schema)
    return app
