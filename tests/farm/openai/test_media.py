"""The front door's media rules for chat messages: inline data within a cap, remote URLs only to allowed hosts."""

from __future__ import annotations

import pytest

from farm.openai.errors import OpenAIError
from farm.openai.media import check_media
from farm.settings import Settings


def parts(*content: dict) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Look:"}, *content]}]


def refusal(messages: list[dict], **kw) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        check_media(messages, **{"max_bytes": 1000, "allowed_hosts": [], **kw})
    assert caught.value.status == 400
    return caught.value


def test_allowed_hosts_from_the_environment_let_remote_media_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_SERVE__MEDIA_ALLOWED_HOSTS", "media.example.com, *.cdn.example.org")
    hosts = Settings().serve.media_allowed_hosts
    assert hosts == ["media.example.com", "*.cdn.example.org"]
    allowed = parts({"type": "image_url", "image_url": {"url": "https://media.example.com/a.png"}},
                    {"type": "video_url", "video_url": {"url": "https://eu.cdn.example.org/b.mp4"}})
    assert check_media(allowed, max_bytes=1000, allowed_hosts=hosts) == 2
    err = refusal(parts({"type": "image_url", "image_url": {"url": "https://evil.example.com/a.png"}}), allowed_hosts=hosts)
    assert err.param == "messages.1.content.1.image_url.url" and "evil.example.com is not allowed" in err.message


def test_every_media_part_type_is_checked() -> None:
    assert refusal(parts({"type": "audio_url", "audio_url": {"url": "http://169.254.169.254/x"}})).param == "messages.1.content.1.audio_url.url"
    assert refusal(parts({"type": "image_url", "image_url": "file:///etc/passwd"})).param == "messages.1.content.1.image_url.url"
    big_audio = refusal(parts({"type": "input_audio", "input_audio": {"data": "A" * 2000, "format": "wav"}}))
    assert big_audio.param == "messages.1.content.1.input_audio.data" and "limit of 1000 bytes" in big_audio.message
    small = parts({"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1000}})
    assert check_media(small, max_bytes=1000, allowed_hosts=[]) == 1
    assert check_media([{"role": "user", "content": "no media at all"}], max_bytes=1, allowed_hosts=[]) == 0
