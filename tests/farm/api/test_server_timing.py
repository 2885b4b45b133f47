"""`Server-Timing` is on the OpenAI-compatible routes' answers, errors included, and on no other route.

No Serve is needed: a validation error, an unconfigured Serve (503), a missing
key (401) and the routes that never call Serve all pass through the same route
class. The header's content does not depend on the database, so SQLite keeps
this quick.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from httpx import Headers

from farm.settings import StorageSettings
from tests.farm.api.conftest import Farm, make_farm

TIMING = re.compile(r"^farm;dur=(\d+\.\d{2}), serve;dur=(\d+\.\d{2})$")
CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    home = tmp_path_factory.mktemp("server-timing")
    yield from make_farm(f"sqlite:///{home / 'farm.db'}", home, StorageSettings(backend="local", local_root=home / "objects"))


def _timing(headers: Headers) -> tuple[float, float]:
    value = headers.get("server-timing")
    assert value is not None, "no Server-Timing header"
    match = TIMING.match(value)
    assert match, value
    return float(match[1]), float(match[2])


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/models", None, 200),
        ("GET", "/v1/files", None, 200),
        ("GET", "/v1/batches", None, 200),
        ("GET", "/v1/usage", None, 200),
        ("POST", "/v1/chat/completions", {"model": "tiny-llama"}, 400),  # no messages: OpenAI's 400 naming the field
        ("POST", "/v1/chat/completions", CHAT, 503),  # FARM_SERVE__URL unset
        ("POST", "/v1/completions", {"model": "tiny-llama", "prompt": "Once"}, 503),
        ("POST", "/v1/images/generations", {"model": "tiny-sd", "prompt": "a castle", "n": 11}, 400),
    ],
)
def test_openai_routes_carry_server_timing(farm: Farm, method: str, path: str, body: dict | None, status: int) -> None:
    r = farm.call(method, path, json=body)
    assert r.status_code == status, r.text
    own, serve = _timing(r.headers)
    assert own >= 0
    assert serve == 0  # nothing here reached Serve: all of the time is the front door's own


def test_an_unauthenticated_openai_call_carries_it_too(farm: Farm) -> None:
    r = farm.client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    _timing(r.headers)


@pytest.mark.parametrize(
    "path",
    ["/v1/projects", "/v1/jobs", "/v1/job-kinds", "/v1/keys", "/v1/webhooks", "/v1/audit-events", "/healthz"],
)
def test_the_farms_own_routes_do_not(farm: Farm, path: str) -> None:
    r = farm.call("GET", path)
    assert r.status_code == 200, r.text
    assert "server-timing" not in r.headers


def test_nor_an_unknown_path_under_v1(farm: Farm) -> None:
    r = farm.call("GET", "/v1/no-such-route")
    assert r.status_code == 404
    assert "server-timing" not in r.headers
