"""Batch file lines: the request line model, the output and error lines pipelines write."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from pydantic import ValidationError

from farm.openai.batch_lines import BODY_MODELS, BatchRequestLine, error_line, output_line, request_id
from farm.openai.batches import Endpoint
from farm.openai.images import parse_size


def test_output_line_carries_the_answer_with_status_200() -> None:
    line = json.loads(output_line("req-1", {"object": "chat.completion", "choices": []}))
    assert list(line) == ["id", "custom_id", "response", "error"]
    assert line["id"].startswith("batch_req_") and line["custom_id"] == "req-1" and line["error"] is None
    assert line["response"]["status_code"] == 200 and line["response"]["request_id"].startswith("req_")
    assert line["response"]["body"] == {"object": "chat.completion", "choices": []}


def test_error_line_carries_an_openai_error_body() -> None:
    line = json.loads(error_line("req-2", "invalid_body", "max_tokens: too small", param="max_tokens"))
    assert line["custom_id"] == "req-2" and line["error"] == {"code": "invalid_body", "message": "max_tokens: too small"}
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"] == {"error": {"message": "max_tokens: too small", "type": "invalid_request_error",
                                                  "param": "max_tokens", "code": "invalid_body"}}
    assert json.loads(error_line(None, "x", "y", 500))["response"]["body"]["error"]["type"] == "server_error"


def test_ids_are_unique() -> None:
    lines = [json.loads(output_line("c", {})) for _ in range(100)]
    assert len({line["id"] for line in lines}) == 100 and len({line["response"]["request_id"] for line in lines}) == 100
    assert request_id() != request_id()


def test_request_line() -> None:
    line = BatchRequestLine.model_validate({"custom_id": "a", "url": "/v1/completions", "body": {"prompt": "x"}})
    assert line.method == "POST"
    with pytest.raises(ValidationError):
        BatchRequestLine.model_validate({"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {}})


def test_every_batch_endpoint_has_its_online_request_model() -> None:
    assert set(BODY_MODELS) == set(get_args(Endpoint))


def test_parse_size() -> None:
    assert parse_size(None) == parse_size("auto") == (None, None)
    assert parse_size("640x360") == (640, 360)
