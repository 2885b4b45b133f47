"""Chat with images: the official `openai` client, the front door and the tiny VLM's Serve deployment (real Ray, real model)."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from serve.config import vlm_route
from serve.demo_models import VLM_IMAGE_TOKENS
from tests.fixtures.serve_apps import VLM, FrontDoor, ServeApps

pytestmark = pytest.mark.slow

QUESTION = "What happens in this shot?"


def data_url(size: tuple[int, int] = (96, 64), colour: tuple[int, int, int] = (200, 80, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def with_image(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": QUESTION}]}]


def test_image_chat_counts_the_image_and_refuses_remote_or_oversized_media(front_door: FrontDoor, serve_apps: ServeApps) -> None:
    key = httpx.post(f"{front_door.url}/v1/keys", json={"name": "vision", "role": "member"}, headers=front_door.headers("a_admin")).json()
    client = openai.OpenAI(base_url=f"{front_door.url}/v1", api_key=key["key"], max_retries=0, timeout=300)

    seen = client.chat.completions.create(model=VLM, messages=with_image(data_url()), max_tokens=8)
    text_only = client.chat.completions.create(model=VLM, messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
                                               max_tokens=8)
    assert seen.model == VLM and seen.choices[0].message.role == "assistant"
    assert 0 < seen.usage.completion_tokens <= 8
    # The same question with the image costs exactly the image's tokens more: the model received it.
    assert seen.usage.prompt_tokens - text_only.usage.prompt_tokens == VLM_IMAGE_TOKENS

    remote = with_image("https://images.example.com/shot.png")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=VLM, messages=remote, max_tokens=4)
    assert refused.value.status_code == 400 and refused.value.body["param"] == "messages.0.content.0.image_url.url"
    assert "images.example.com is not allowed" in refused.value.body["message"]
    # Any media part, on any model: a video URL to the LLM is refused the same way before it reaches Serve.
    video = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "http://10.0.0.1/a.mp4"}}]}]
    with pytest.raises(openai.BadRequestError) as refused_video:
        client.chat.completions.create(model="tiny-llama", messages=video, max_tokens=4)
    assert refused_video.value.body["param"] == "messages.0.content.0.video_url.url"

    cap = front_door.settings.serve.max_media_bytes
    huge = "data:image/png;base64," + "A" * (cap * 4 // 3 + 8)
    with pytest.raises(openai.BadRequestError) as too_big:
        client.chat.completions.create(model=VLM, messages=with_image(huge), max_tokens=4)
    assert too_big.value.body["param"] == "messages.0.content.0.image_url.url" and f"limit of {cap} bytes" in too_big.value.body["message"]

    # The deployment checks again on its own (as vLLM's allowed_media_domains does): Serve called directly refuses too.
    direct = httpx.post(f"{serve_apps.url}{vlm_route(VLM)}/v1/chat/completions", json={"messages": remote, "max_tokens": 4}, timeout=60)
    assert direct.status_code == 400 and direct.json()["error"]["param"] == "messages.0.content.0.image_url.url"

    report = httpx.get(f"{front_door.url}/v1/usage", params={"key_id": key["id"], "group_by": ["model"]},
                       headers=front_door.headers("a_viewer")).json()
    rows = {r["model"]: r for r in report["data"]}
    assert rows[VLM]["requests"] == 2  # the refused requests never reached a model and are not billed
    assert rows[VLM]["prompt_tokens"] == seen.usage.prompt_tokens + text_only.usage.prompt_tokens
