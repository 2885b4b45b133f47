"""OpenAI's error shape on the OpenAI-compatible routes: answers and their OpenAPI docs.

The rest of the API answers ``{"error": {"type", "message"}}``; these routes
answer what the ``openai`` client parses (:mod:`farm.openai.errors`),
validation errors as 400 naming the field in ``param``. The route class that
applies this to every error is :class:`farm.api.routes.openai.route.OpenAIRoute`.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from farm.api.errors import ApiError
from farm.openai.errors import OpenAIError, OpenAIErrorResponse, describe

LOCATIONS = ("body", "query", "header", "path", "form")


def respond(error: OpenAIError) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), status_code=error.status, headers=error.headers or None)


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def unavailable(message: str, *, retry_after_s: float = 5, code: str = "unavailable") -> OpenAIError:
    return OpenAIError(503, message, code=code, headers=retry_after(retry_after_s))


def _within(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A field's place without the request part it came in (``body``, ``query``…): a batch body's ``loc``."""
    return loc[1:] if loc and loc[0] in LOCATIONS else loc


def from_validation(exc: RequestValidationError) -> OpenAIError:
    param, message = describe([{**e, "loc": _within(tuple(e.get("loc", ())))} for e in exc.errors()])
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
