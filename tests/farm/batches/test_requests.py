"""A batch line's body is refused exactly when the online route refuses it, naming the same `param`.

The same bodies go to the online routes (in-process front door, no Serve:
validation answers before Serve is asked) and, as lines of one batch file,
through the batch validator; each must be a 400 online and an
``invalid_body`` line error with the same ``param`` and message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.batches.requests import BatchRequest, LineError, Validator, split_lines
from farm.settings import StorageSettings
from tests.farm.api.conftest import Farm, make_farm

DROP = object()  # a field left out of the body
GOOD: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    "/v1/completions": {"model": "tiny-llama", "prompt": "once upon a time", "max_tokens": 4},
    "/v1/images/generations": {"model": "tiny-sd", "prompt": "a boat", "size": "64x64", "steps": 2},
}
BAD: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"max_tokens": 0},  # out of range
        {"max_tokens": 1 << 21},
        {"max_tokens": "four"},  # wrong type
        {"max_tokens": 2.5},
        {"temperature": 2.5},
        {"top_p": 0},
        {"n": 17},
        {"stream": "sometimes"},
        {"model": 7},
        {"model": ""},
        {"model": DROP},
        {"messages": []},
        {"messages": "hi"},
        {"messages": DROP},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"max_completion_tokens": -1},
        {"max_tokens": 0, "temperature": -1},  # two problems: the first is named, the other counted
    ],
    "/v1/completions": [
        {"prompt": DROP},
        {"prompt": {"text": "x"}},
        {"prompt": [[1, "a"]]},
        {"max_tokens": -3},
        {"n": 0},
    ],
    "/v1/images/generations": [
        {"prompt": ""},
        {"prompt": "x" * 5000},
        {"prompt": 3},
        {"n": 11},
        {"size": "big"},
        {"steps": 1000},
        {"seed": -1},
        {"guidance_scale": "high"},
        {"response_format": "gif"},
        {"style_preset": "noir"},  # unknown fields are refused
    ],
}


def _body(endpoint: str, change: dict[str, Any]) -> dict[str, Any]:
    merged = {**GOOD[endpoint], **change}
    return {k: v for k, v in merged.items() if v is not DROP}


def _validate_file(endpoint: str, bodies: list[dict[str, Any]]) -> dict[int, BatchRequest | LineError]:
    data = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": endpoint, "body": b}) + "\n" for i, b in enumerate(bodies))
    validator = Validator(endpoint, {"tiny-llama", "tiny-sd"}, max_lines=1000)
    return {line: validator.check(line, raw) for line, raw in split_lines([data.encode()])}


@pytest.fixture
def farm(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


@pytest.mark.parametrize("endpoint", list(BAD))
def test_batch_refuses_what_the_online_route_refuses(farm: Farm, endpoint: str) -> None:
    bodies = [GOOD[endpoint], *(_body(endpoint, change) for change in BAD[endpoint])]
    checked = _validate_file(endpoint, bodies)
    assert isinstance(checked[1], BatchRequest), checked[1]  # the good body runs
    for line, body in enumerate(bodies[1:], start=2):
        online = farm.call("POST", endpoint, "a_member", json=body)
        assert online.status_code == 400, (body, online.text)
        error = online.json()["error"]
        batch = checked[line]
        assert isinstance(batch, LineError) and batch.code == "invalid_body", (body, batch)
        assert batch.param == error["param"], (body, batch, error)
        assert batch.message == f"line {line}: {error['message']}", (body, batch, error)
        assert batch.custom_id == f"r{line - 1}"
