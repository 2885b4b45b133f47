"""Lines of batch files: the request line of an input file, the lines of the output and error files.

The shapes OpenAI's Batch API uses (and vLLM's ``run_batch`` reads and
writes). A request line's ``body`` is the online route's request: it is
checked with the same model (:data:`BODY_MODELS`, by endpoint), so a body the
front door refuses is refused in a batch too, naming the same ``param``. An
output line carries the endpoint's answer with status 200; an error line
carries an OpenAI error body, and its code and message again in ``error``.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from farm.openai.completions import ChatCompletionRequest, CompletionRequest
from farm.openai.errors import OpenAIErrorBody, OpenAIErrorResponse, error_type
from farm.openai.images import ImageGenerationRequest

BatchBody = ChatCompletionRequest | CompletionRequest | ImageGenerationRequest
BODY_MODELS: dict[str, type[BatchBody]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/images/generations": ImageGenerationRequest,
}


def request_id() -> str:
    """A unique id for one request of a batch (``response.request_id``)."""
    return f"req_{uuid.uuid4().hex}"


def _line_id() -> str:
    return f"batch_req_{uuid.uuid4().hex}"


class BatchRequestLine(BaseModel):
    """One line of a batch input file; its ``body`` is checked against ``BODY_MODELS[url]``."""

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]


class BatchResponse(BaseModel):
    status_code: int = 200
    request_id: str = Field(default_factory=request_id)
    body: dict[str, Any]


class BatchOutputLine(BaseModel):
    """A line of the output file: one request's answer."""

    id: str = Field(default_factory=_line_id)
    custom_id: str
    response: BatchResponse
    error: None = None


class BatchErrorResponse(BaseModel):
    status_code: int
    request_id: str = Field(default_factory=request_id)
    body: OpenAIErrorResponse


class BatchLineError(BaseModel):
    code: str
    message: str


class BatchErrorLine(BaseModel):
    """A line of the error file: why one request has no answer."""

    id: str = Field(default_factory=_line_id)
    custom_id: str | None
    response: BatchErrorResponse
    error: BatchLineError


class BatchExpiredLine(BaseModel):
    """A line of the error file for a request the completion window left unrun: no response at all."""

    id: str = Field(default_factory=_line_id)
    custom_id: str
    response: None = None
    error: BatchLineError


EXPIRED_CODE = "batch_expired"
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


def output_line(custom_id: str, body: dict[str, Any]) -> str:
    """The output file's JSON line for ``custom_id``'s answer ``body``."""
    return BatchOutputLine(custom_id=custom_id, response=BatchResponse(body=body)).model_dump_json()


def error_line(custom_id: str | None, code: str, message: str, status: int = 400, *, param: str | None = None) -> str:
    """The error file's JSON line for ``custom_id``: an OpenAI error body with ``status``."""
    error = OpenAIErrorBody(message=message, type=error_type(status), param=param, code=code)
    response = BatchErrorResponse(status_code=status, body=OpenAIErrorResponse(error=error))
    return BatchErrorLine(custom_id=custom_id, response=response, error=BatchLineError(code=code, message=message)).model_dump_json()


def expired_line(custom_id: str) -> str:
    """The error file's JSON line for ``custom_id`` when the batch expired before it ran (OpenAI's ``batch_expired``)."""
    return BatchExpiredLine(custom_id=custom_id, error=BatchLineError(code=EXPIRED_CODE, message=EXPIRED_MESSAGE)).model_dump_json()
