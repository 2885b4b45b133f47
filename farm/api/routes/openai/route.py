"""The route class of the OpenAI-compatible routes: errors in OpenAI's shape, timing and rate-limit headers."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from farm.api.routes.openai.errors import from_exception, respond
from farm.api.routes.openai.upstream import UPSTREAM_SECONDS


class OpenAIRoute(APIRoute):
    """An APIRoute whose errors come out in OpenAI's shape, with rate-limit and Server-Timing headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            start = time.perf_counter()
            UPSTREAM_SECONDS.set(0.0)
            try:
                response = await handler(request)
            except Exception as exc:
                error = from_exception(exc)
                if error is None:
                    raise
                response = respond(error)
            # What the front door itself cost, apart from waiting on Serve (to headers, for streams).
            upstream = UPSTREAM_SECONDS.get()
            app = time.perf_counter() - start - upstream
            response.headers["Server-Timing"] = f"farm;dur={app * 1000:.2f}, serve;dur={upstream * 1000:.2f}"
            decision = getattr(request.state, "ratelimit", None)
            if decision is not None:
                response.headers["x-ratelimit-limit-requests"] = str(decision.limit)
                response.headers["x-ratelimit-remaining-requests"] = str(decision.remaining)
            return response

        return route
