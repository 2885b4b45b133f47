"""Generated images belong to the caller's org; keys are rate limited; usage adds up to the requests made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from farm.ids import new_id
from tests.fixtures.postgres import create_database
from tests.fixtures.serve_apps import LLM, SD, FrontDoor, ServeApps, start_front_door

pytestmark = pytest.mark.slow


def test_org_b_cannot_see_org_a_images(front_door: FrontDoor) -> None:
    project = httpx.post(f"{front_door.url}/v1/projects", json={"name": "storyboard"}, headers=front_door.headers("a_admin")).json()
    a = front_door.openai(default_headers={"X-Farm-Project": project["id"]})
    image = a.images.generate(model=SD, prompt="a lighthouse", response_format="url", extra_body={"steps": 2, "seed": 11}).data[0]
    asset_id = image.model_extra["asset_id"]

    mine = httpx.get(f"{front_door.url}/v1/assets/{asset_id}", headers=front_door.headers("a_viewer"))
    assert mine.status_code == 200 and mine.json()["project_id"] == project["id"]
    listed = httpx.get(f"{front_door.url}/v1/projects/{project['id']}/assets", headers=front_door.headers("a_viewer")).json()
    assert [x["id"] for x in listed["data"]] == [asset_id]

    for path in (f"/v1/assets/{asset_id}", f"/v1/assets/{asset_id}/content", f"/v1/projects/{project['id']}/assets"):
        theirs = httpx.get(f"{front_door.url}{path}", headers=front_door.headers("b_admin"))
        absent = httpx.get(f"{front_door.url}{path.replace(asset_id, new_id('asset')).replace(project['id'], new_id('proj'))}",
                           headers=front_door.headers("b_admin"))
        assert theirs.status_code == 404 and theirs.json() == absent.json(), path

    # Nor can org B bill or store into org A's project.
    b = front_door.openai("b_member", default_headers={"X-Farm-Project": project["id"]})
    with pytest.raises(openai.NotFoundError):
        b.images.generate(model=SD, prompt="a lighthouse", extra_body={"steps": 2})


def test_default_project_holds_url_images(front_door: FrontDoor) -> None:
    item = front_door.openai("b_member").images.generate(model=SD, prompt="a fox", extra_body={"steps": 2, "seed": 5}).data[0]
    projects = httpx.get(f"{front_door.url}/v1/projects", headers=front_door.headers("b_viewer")).json()["data"]
    (default,) = [p for p in projects if p["name"] == front_door.settings.serve.default_project]
    asset = httpx.get(f"{front_door.url}/v1/assets/{item.model_extra['asset_id']}", headers=front_door.headers("b_viewer")).json()
    assert asset["project_id"] == default["id"]


def test_rate_limit_is_per_key_with_retry_after(serve_apps: ServeApps, postgres_server: str, tmp_path: Path) -> None:
    door = start_front_door(tmp_path, create_database(postgres_server), serve_apps, rate_limit_rps=0.001, rate_limit_burst=3)
    try:
        client = door.openai()
        for _ in range(3):
            client.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        assert limited.value.status_code == 429
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert limited.value.body["code"] == "rate_limit_exceeded"
        assert limited.value.response.headers["x-ratelimit-remaining-requests"] == "0"
        # Another key of the same org has its own bucket.
        assert door.openai("a_admin").models.list().data
    finally:
        door.farm.stop()


def test_usage_totals_match_the_requests_made(front_door: FrontDoor) -> None:
    key = httpx.post(f"{front_door.url}/v1/keys", json={"name": "usage-probe", "role": "member"}, headers=front_door.headers("a_admin")).json()
    client = openai.OpenAI(base_url=f"{front_door.url}/v1", api_key=key["key"], max_retries=0)
    chat = client.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "Hello!"}], max_tokens=5)
    done = client.completions.create(model=LLM, prompt="The quick brown fox", max_tokens=4)
    streamed = list(client.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                                   stream=True, stream_options={"include_usage": True}))
    client.images.generate(model=SD, prompt="a tree", n=3, response_format="b64_json", extra_body={"steps": 2})
    client.images.edit(image=("in.png", _red_png(), "image/png"), prompt="blue", model=SD, response_format="b64_json",
                       extra_body={"steps": 2, "strength": 0.5})
    with pytest.raises(openai.BadRequestError):  # refused before Serve: not billed
        client.images.generate(model=SD, prompt="a tree", n=50)

    prompt = chat.usage.prompt_tokens + done.usage.prompt_tokens + streamed[-1].usage.prompt_tokens
    completion = chat.usage.completion_tokens + done.usage.completion_tokens + streamed[-1].usage.completion_tokens
    report = httpx.get(f"{front_door.url}/v1/usage", params={"key_id": key["id"], "group_by": ["endpoint", "model"]},
                       headers=front_door.headers("a_viewer")).json()
    assert report["totals"]["requests"] == 5
    assert report["totals"]["prompt_tokens"] == prompt
    assert report["totals"]["completion_tokens"] == completion == 5 + 4 + 3
    assert report["totals"]["images"] == 4
    assert report["totals"]["replica_seconds"] > 0
    rows = {(r["endpoint"], r["model"]): r for r in report["data"]}
    assert set(rows) == {("chat.completions", LLM), ("completions", LLM), ("images.generations", SD), ("images.edits", SD)}
    assert rows[("chat.completions", LLM)]["requests"] == 2 and rows[("images.generations", SD)]["images"] == 3
    assert all(r["replica_seconds"] > 0 for r in rows.values())

    # Another org sees none of it, even asking for that key.
    other = httpx.get(f"{front_door.url}/v1/usage", params={"key_id": key["id"]}, headers=front_door.headers("b_admin")).json()
    assert other["totals"]["requests"] == 0

    # The CLI reads the same numbers.
    env = {**os.environ, "FARM_URL": front_door.url, "FARM_API_KEY": front_door.keys["a_viewer"], "FARM_HOME": str(front_door.settings.home)}
    out = subprocess.run([sys.executable, "-m", "farm.cli.main", "usage", "--key", key["id"], "--by", "model", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert cli["totals"] == report["totals"]
    assert {r["model"] for r in cli["data"]} == {LLM, SD}


def _red_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()
