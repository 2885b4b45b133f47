"""OpenAI's error body, and the exception that carries one.

What the ``openai`` client parses: ``{"error": {"message", "type", "param",
"code"}}``. A validation problem names the field in ``param`` the same way
online and in a batch line (:func:`describe`), so a body the front door
refuses reads the same in a batch's errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

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


def error_type(status: int) -> str:
    return TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


class OpenAIError(Exception):
    """An error answered in OpenAI's shape (with its HTTP status and headers)."""

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
        self.type = type or error_type(status)
        self.param = param
        self.code = code if code is not None else CODES.get(status)
        self.headers = dict(headers or {})

    def body(self) -> OpenAIErrorResponse:
        return OpenAIErrorResponse(error=OpenAIErrorBody(message=self.message, type=self.type, param=self.param, code=self.code))


def describe(errors: Sequence[Mapping[str, Any]]) -> tuple[str | None, str]:
    """The ``param`` and message of a pydantic validation failure of a request body.

    ``loc`` is relative to the body (``("messages", 0, "role")`` →
    ``messages.0.role``); the first error is named, the rest counted.
    """
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    message = f"{param or 'body'}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return param, message
