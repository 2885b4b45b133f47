"""Media in chat messages: inline data within a size cap, remote URLs only to allowed hosts.

A remote media URL makes whoever loads it fetch it, on the requester's
behalf: left open, a caller could point the model server at the farm's
internals, as with webhook targets. The front door checks every media part
(``image_url``, ``video_url``, ``audio_url``, ``input_audio``, ``file``)
before a request reaches Serve; the model server checks again with its own
list (vLLM's ``allowed_media_domains``, the same key for the farm's
transformers deployment). Refusals are a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from farm.openai.errors import OpenAIError
from farm.webhooks.targets import host_allowed, host_of

#: Part type → the keys (under the part's own object) that hold a URL or inline data.
MEDIA_FIELDS: dict[str, tuple[str, ...]] = {
    "image_url": ("url",),
    "video_url": ("url",),
    "audio_url": ("url",),
    "input_audio": ("data",),  # base64 inline audio, no URL
    "file": ("file_data",),  # base64 inline file
}


def check_media(messages: Sequence[Any], *, max_bytes: int, allowed_hosts: Sequence[str]) -> int:
    """Refuse oversized inline media and remote URLs outside ``allowed_hosts``; returns how many media parts there are."""
    count = 0
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in MEDIA_FIELDS:
                continue
            kind = part["type"]
            holder = part.get(kind)
            for key in MEDIA_FIELDS[kind]:
                value = holder.get(key) if isinstance(holder, dict) else holder if key == "url" else None
                if isinstance(value, str):
                    count += 1
                    _check_value(value, f"messages.{i}.content.{j}.{kind}.{key}", key, max_bytes, allowed_hosts)
    return count


def _check_value(value: str, param: str, key: str, max_bytes: int, allowed_hosts: Sequence[str]) -> None:
    if value.startswith("data:") or key != "url":
        payload = value.partition(",")[2] if value.startswith("data:") else value
        size = len(payload) * 3 // 4
        if size > max_bytes:
            raise OpenAIError(400, f"{param}: inline media of about {size} bytes is over this farm's limit of {max_bytes} bytes "
                                   "(FARM_SERVE__MAX_MEDIA_BYTES)", param=param)
        return
    try:
        url = httpx.URL(value)
        host = host_of(url) if url.host else ""
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise OpenAIError(400, f"{param}: not a valid URL", param=param) from None
    if url.scheme not in ("http", "https") or not host:
        raise OpenAIError(400, f"{param}: media must be a data URL or an http(s) URL", param=param)
    if not host_allowed(host, list(allowed_hosts)):
        raise OpenAIError(400, f"{param}: remote media URLs are refused; host {host} is not allowed (FARM_SERVE__MEDIA_ALLOWED_HOSTS)",
                          param=param)
