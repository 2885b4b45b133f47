"""OpenAI's error shape, scoped to the OpenAI-compatible routes.

The rest of the API answers ``{"error": {"type", "message"}}``; these routes
answer what the ``openai`` client parses: ``{"error": {"message", "type",
"param", "code"}}``, validation errors as 400 naming the field in ``param``.
:class:`OpenAIRoute` converts every error raised while handling one of these
routes (auth, validation, rate limit, Serve) and adds the rate-limit headers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm.api.errors import ApiError

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}
CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 503: "overloaded"}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code if code is not None else CODES.get(status)
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = OpenAIErrorResponse(error=OpenAIErrorBody(message=self.message, type=self.type, param=self.param, code=self.code))
        return JSONResponse(body.model_dump(), status_code=self.status, headers=self.headers or None)


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def unavailable(message: str, *, retry_after_s: float = 5, code: str = "unavailable") -> OpenAIError:
    return OpenAIError(503, message, code=code, headers=retry_after(retry_after_s))


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path", "form")]
    return ".".join(parts) or None


def from_validation(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _param(tuple(first.get("loc", ())))
    message = f"{param or 'body'}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return OpenAIError(400, message, param=param)


def from_exception(exc: Exception) -> OpenAIError | None:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, RequestValidationError):
        return from_validation(exc)
    if isinstance(exc, ApiError):
        return OpenAIError(exc.status, exc.message, headers=exc.headers)
    if isinstance(exc, StarletteHTTPException):
        return OpenAIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return None


class OpenAIRoute(APIRoute):
    """An APIRoute whose errors come out in OpenAI's shape, with rate-limit and Server-Timing headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            from farm.api.routes.openai.upstream import UPSTREAM_SECONDS

            start = time.perf_counter()
            UPSTREAM_SECONDS.set(0.0)
            try:
                response = await handler(request)
            except Exception as exc:
                error = from_exception(exc)
                if error is None:
                    raise
                response = error.response()
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


def _doc(description: str) -> dict[str, Any]:
    return {"model": OpenAIErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("invalid request; `param` names the field"),
    401: _doc("missing or invalid API key"),
    403: _doc("the key's role may not do this"),
    404: _doc("unknown model or project"),
    429: _doc("rate limit of this API key exceeded; see Retry-After"),
}
SERVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    502: _doc("the generation backend failed"),
    503: _doc("generation unavailable: Serve not configured or not reachable, model not deployed, or overloaded; see Retry-After"),
    504: _doc("the generation backend did not answer in time"),
}
