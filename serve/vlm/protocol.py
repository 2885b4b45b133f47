"""What a vision-language engine takes and gives, and OpenAI chat messages turned into that.

A :class:`VisionJob` is one chat: messages whose content parts are text or
an image placeholder, the images in the order they appear, and how much to
generate. :func:`parse_messages` turns OpenAI chat messages (``image_url``
parts with data URLs, or remote URLs where the deployment allows their
hosts) into one, naming the offending field of anything it refuses; the
caption stage builds jobs from decoded frames directly.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from serve.diffusion.protocol import InvalidRequest

#: Content part types that carry media by URL or inline data (OpenAI's and vLLM's names).
MEDIA_PARTS = ("image_url", "video_url", "audio_url", "input_audio", "file")


class VisionLimits(BaseModel):
    """Input limits of one vision-language deployment; beyond them is a 400 naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_images: int = Field(default=8, ge=1, description="Images in one request")
    max_image_bytes: int = Field(default=4 << 20, ge=1, description="Largest image, inline or fetched")
    max_tokens: int = Field(default=512, ge=1, description="Most tokens one answer may ask for")
    fetch_timeout_s: float = Field(default=10, gt=0, description="Longest wait for a remote image")


@dataclass(frozen=True)
class VisionJob:
    """One chat to answer: ``messages`` hold ``{"type": "text"}`` / ``{"type": "image"}`` parts, ``images`` fill the latter in order."""

    messages: list[dict[str, Any]]
    images: tuple[Any, ...] = field(default=(), compare=False)  # PIL images or HxWx3 uint8 arrays
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        slots = sum(1 for m in self.messages if isinstance(m.get("content"), list)
                    for p in m["content"] if p.get("type") == "image")
        if slots != len(self.images):
            raise ValueError(f"the messages hold {slots} image parts but {len(self.images)} images were given")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")


@dataclass(frozen=True)
class VisionResult:
    """One answer and what it cost: ``prompt_tokens`` count every image's tokens too."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    image_tokens: int
    finish_reason: str  # "stop" (end of sequence) or "length" (max_tokens)
    batch_size: int  # jobs answered in the same engine call
    seconds: float = 0.0  # this job's share of the call


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """``host`` equals a pattern, or matches a ``*.example.com`` one (a strict subdomain)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def data_url_bytes(url: str, param: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:…;base64,…`` URL, refused (naming ``param``) when malformed or over ``max_bytes``."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise InvalidRequest(param, f"{param}: a data URL must look like data:image/png;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes:
        raise InvalidRequest(param, f"{param}: the image is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(param, f"{param}: the data URL is not valid base64") from None


def parse_messages(messages: Sequence[dict[str, Any]], limits: VisionLimits,
                   allowed_hosts: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[Any]]:
    """Engine messages and the images (RGB PIL) they refer to; unsupported or refused parts raise ``InvalidRequest``."""
    out: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        role = str(message.get("role") or "")
        if content is None or isinstance(content, str):
            out.append({"role": role, "content": content or ""})
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"messages.{i}.content", f"messages.{i}.content must be a string or a list of parts")
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            param = f"messages.{i}.content.{j}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text") or "")})
            elif kind == "image_url":
                spec = part.get("image_url")
                url = spec.get("url") if isinstance(spec, dict) else spec
                if not isinstance(url, str):
                    raise InvalidRequest(f"{param}.image_url.url", f"{param}.image_url.url is missing")
                if len(images) == limits.max_images:
                    raise InvalidRequest(param, f"at most {limits.max_images} images per request")
                images.append(decode_image(_image_bytes(url, f"{param}.image_url.url", limits, allowed_hosts), f"{param}.image_url.url"))
                parts.append({"type": "image"})
            else:
                raise InvalidRequest(f"{param}.type", f"{param}.type {kind!r} is not supported by this model (text and image_url are)")
        out.append({"role": role, "content": parts})
    return out, images


def _image_bytes(url: str, param: str, limits: VisionLimits, allowed_hosts: Sequence[str]) -> bytes:
    if url.startswith("data:"):
        return data_url_bytes(url, param, limits.max_image_bytes)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise InvalidRequest(param, f"{param}: not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidRequest(param, f"{param}: only data URLs and http(s) URLs are accepted")
    if not host_allowed(parsed.host, allowed_hosts):
        raise InvalidRequest(param, f"{param}: remote media URLs are refused; host {parsed.host} is not an allowed media domain")
    try:
        with httpx.stream("GET", url, timeout=limits.fetch_timeout_s, follow_redirects=False) as response:
            response.raise_for_status()
            body = io.BytesIO()
            for chunk in response.iter_bytes():
                body.write(chunk)
                if body.tell() > limits.max_image_bytes:
                    raise InvalidRequest(param, f"{param}: the image is larger than {limits.max_image_bytes} bytes")
            return body.getvalue()
    except httpx.HTTPError as exc:
        raise InvalidRequest(param, f"{param}: the image could not be fetched ({type(exc).__name__})") from None


def decode_image(data: bytes, param: str) -> Any:
    """Image bytes as an RGB PIL image; anything unreadable is a 400 on ``param``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidRequest(param, f"{param}: not a readable PNG, JPEG or WebP image ({type(exc).__name__})") from None
