"""The official `openai` client, unchanged, against the front door on a real Ray cluster (tiny models)."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.fixtures.serve_apps import LLM, SD, FrontDoor

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story about a dragon."}]


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_models_list(front_door: FrontDoor) -> None:
    models = {m.id: m for m in front_door.openai("a_viewer").models.list()}
    assert {LLM, SD} <= set(models)
    assert models[LLM].model_extra["kind"] == "llm" and models[SD].model_extra["kind"] == "diffusion"
    assert models[LLM].owned_by == "storycore-farm"


def test_chat_completion(front_door: FrontDoor) -> None:
    reply = front_door.openai().chat.completions.create(model=LLM, messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.object == "chat.completion" and reply.model == LLM
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 12


def test_chat_completion_streamed(front_door: FrontDoor) -> None:
    client = front_door.openai()
    stream = client.chat.completions.create(model=LLM, messages=MESSAGES, max_tokens=10, temperature=0, stream=True)
    chunks = list(stream)
    assert len(chunks) >= 3 and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    # The client did not ask for usage: the usage chunk the front door requested is not passed on.
    assert all(c.choices for c in chunks)

    with_usage = list(client.chat.completions.create(model=LLM, messages=MESSAGES, max_tokens=10, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
    assert not with_usage[-1].choices and with_usage[-1].usage.completion_tokens == 10
    again = "".join(c.choices[0].delta.content or "" for c in with_usage if c.choices)
    assert again == text  # greedy decoding: same tokens either way


def test_text_completion_streamed_and_not(front_door: FrontDoor) -> None:
    client = front_door.openai()
    whole = client.completions.create(model=LLM, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert whole.object == "text_completion" and whole.usage.completion_tokens == 8
    pieces = list(client.completions.create(model=LLM, prompt="Once upon a time", max_tokens=8, temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == whole.choices[0].text


def test_image_generation_b64(front_door: FrontDoor) -> None:
    result = front_door.openai().images.generate(model=SD, prompt="a castle on a mountain", n=2, response_format="b64_json",
                                                 extra_body={"steps": 2, "seed": 7})
    assert len(result.data) == 2
    images = [_png(base64.b64decode(d.b64_json)) for d in result.data]
    assert all(img.size == (64, 64) and img.mode == "RGB" for img in images)
    assert [d.model_extra["seed"] for d in result.data] == [7, 8]
    assert result.data[0].url is None


def test_image_generation_url_downloads_a_png(front_door: FrontDoor) -> None:
    result = front_door.openai().images.generate(model=SD, prompt="a cat on a red chair", response_format="url",
                                                 size="64x64", extra_body={"steps": 2, "seed": 1})
    (item,) = result.data
    assert item.url and item.b64_json is None
    download = httpx.get(item.url, timeout=30)  # presigned: no API key needed
    assert download.status_code == 200
    assert _png(download.content).size == (64, 64)
    asset = httpx.get(f"{front_door.url}/v1/assets/{item.model_extra['asset_id']}", headers=front_door.headers(), timeout=30).json()
    assert asset["content_type"] == "image/png" and asset["kind"] == "image"


def test_image_edit(front_door: FrontDoor) -> None:
    source = io.BytesIO()
    Image.new("RGB", (48, 80), (200, 30, 30)).save(source, format="PNG")
    client = front_door.openai()
    edited = client.images.edit(image=("red.png", source.getvalue(), "image/png"), prompt="make it blue", model=SD,
                                response_format="b64_json", extra_body={"steps": 4, "strength": 0.5, "seed": 3})
    (item,) = edited.data
    assert _png(base64.b64decode(item.b64_json)).size == (64, 64)  # re-rendered at the model's size
    as_url = client.images.edit(image=("red.png", source.getvalue(), "image/png"), prompt="make it blue", model=SD,
                                response_format="url", extra_body={"steps": 4, "strength": 0.5, "seed": 3})
    assert httpx.get(as_url.data[0].url, timeout=30).content == base64.b64decode(item.b64_json)  # same seed, same image


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": "4096x4096"}, "size"),
        ({"size": "60x64"}, "size"),
        ({"n": 11}, "n"),
        ({"prompt": "x" * 5000}, "prompt"),
        ({"extra_body": {"steps": 1000}}, "steps"),
        ({"extra_body": {"seed": -1}}, "seed"),
    ],
)
def test_image_limits_are_400_naming_the_field(front_door: FrontDoor, kwargs: dict, param: str) -> None:
    call = {"model": SD, "prompt": "a boat", "response_format": "b64_json", **kwargs}
    with pytest.raises(openai.BadRequestError) as err:
        front_door.openai().images.generate(**call)
    assert err.value.status_code == 400
    assert err.value.body["param"] == param, err.value.body


def test_errors_have_openai_shape(front_door: FrontDoor) -> None:
    bad_key = openai.OpenAI(base_url=f"{front_door.url}/v1", api_key="sk_farm_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad_key.models.list()
    assert auth.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        front_door.openai().chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert missing.value.body["param"] == "model" and missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError):
        front_door.openai("a_viewer").chat.completions.create(model=LLM, messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.BadRequestError) as too_long:  # vLLM's own limit, passed through
        front_door.openai().completions.create(model=LLM, prompt="dragon " * 2000, max_tokens=2)
    assert too_long.value.status_code == 400
