"""What the diffusion deployment takes and gives.

The deployment's HTTP body is :class:`ImageRequest` (JSON, input image as
base64) and its answer :class:`ImageResponse`. The front door turns the
OpenAI Images API into this; pipelines may call it directly. A request for
``n`` images becomes ``n`` :class:`ImageJob`s with seeds ``seed, seed+1, …``,
so every image depends only on its own job, never on what it was batched with.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_SEED = 2**32 - 1


class InvalidRequest(ValueError):
    """A request outside the limits; ``param`` names the offending field (HTTP 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class ImageLimits(BaseModel):
    """Input limits of one diffusion deployment; beyond them is a 400 naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_n: int = Field(default=10, ge=1)
    min_side: int = Field(default=64, ge=8)
    max_side: int = Field(default=1024, ge=8)
    side_multiple: int = Field(default=8, ge=1, description="Latents are 1/8 of the image: sides must divide")
    max_steps: int = Field(default=100, ge=1)
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_image_bytes: int = Field(default=4 << 20, ge=1, description="Largest input image for image-to-image")


class ImageDefaults(BaseModel):
    """What an engine uses where a request leaves a setting out."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    steps: int
    guidance_scale: float


class ImageRequest(BaseModel):
    """One call to the deployment: text-to-image, or image-to-image when ``image_b64`` is set."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    n: int = 1
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance_scale: float | None = Field(default=None, ge=0, le=50)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    image_b64: str | None = Field(default=None, description="Input image (PNG/JPEG/WebP, base64) for image-to-image")
    strength: float = Field(default=0.75, gt=0, le=1, description="Image-to-image: how far from the input to go")

    def check(self, limits: ImageLimits) -> None:
        """Raise :class:`InvalidRequest` naming the first field out of range."""
        if not self.prompt.strip():
            raise InvalidRequest("prompt", "prompt must not be empty")
        for name in ("prompt", "negative_prompt"):
            text = getattr(self, name)
            if text is not None and len(text) > limits.max_prompt_chars:
                raise InvalidRequest(name, f"{name} is longer than {limits.max_prompt_chars} characters")
        if not 1 <= self.n <= limits.max_n:
            raise InvalidRequest("n", f"n must be between 1 and {limits.max_n}")
        for name in ("width", "height"):
            side = getattr(self, name)
            if side is None:
                continue
            if not limits.min_side <= side <= limits.max_side or side % limits.side_multiple:
                raise InvalidRequest(
                    "size",
                    f"{name} {side} is not supported: sides must be multiples of {limits.side_multiple} "
                    f"between {limits.min_side} and {limits.max_side}",
                )
        if self.steps is not None and not 1 <= self.steps <= limits.max_steps:
            raise InvalidRequest("steps", f"steps must be between 1 and {limits.max_steps}")
        if self.image_b64 is not None and len(self.image_b64) * 3 // 4 > limits.max_image_bytes:
            raise InvalidRequest("image", f"image is larger than {limits.max_image_bytes} bytes")

    def jobs(self, defaults: ImageDefaults) -> list[ImageJob]:
        """One job per image, defaults filled in; decodes the input image once."""
        width, height = self.width or defaults.width, self.height or defaults.height
        init = decode_image(self.image_b64, width, height) if self.image_b64 is not None else None
        steps = self.steps or defaults.steps
        if init is not None and int(steps * self.strength) < 1:
            raise InvalidRequest("strength", f"strength {self.strength} leaves no denoising step out of {steps}")
        seed = self.seed if self.seed is not None else secrets.randbelow(MAX_SEED + 1)
        return [
            ImageJob(
                prompt=self.prompt,
                negative_prompt=self.negative_prompt,
                width=width,
                height=height,
                steps=steps,
                guidance_scale=self.guidance_scale if self.guidance_scale is not None else defaults.guidance_scale,
                seed=(seed + i) % (MAX_SEED + 1),
                init_image=init,
                strength=self.strength if init is not None else None,
            )
            for i in range(self.n)
        ]


BatchKey = tuple[str, int, int, int, float, float | None]


@dataclass(frozen=True)
class ImageJob:
    """One image to render. Jobs with equal :attr:`batch_key` can share a pipeline call."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    init_image: Image | None = field(default=None, compare=False)
    strength: float | None = None

    @property
    def mode(self) -> Literal["text2img", "img2img"]:
        return "text2img" if self.init_image is None else "img2img"

    @property
    def batch_key(self) -> BatchKey:
        return (self.mode, self.width, self.height, self.steps, self.guidance_scale, self.strength)


def group_compatible(jobs: list[ImageJob]) -> list[list[int]]:
    """Indices of ``jobs`` grouped by batch key, groups in order of first appearance."""
    groups: dict[BatchKey, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.batch_key, []).append(i)
    return list(groups.values())


Consistency = Literal["none", "anchor"]


@dataclass(frozen=True)
class FrameJob:
    """One video frame to restyle (image-to-image) from an in-memory RGB array.

    ``anchor`` indexes :attr:`FrameBatch.anchors`: under ``consistency="anchor"``
    the frame's self-attention also sees that anchor, which is what keeps
    neighbouring frames alike. ``None`` renders the frame on its own.
    """

    image: np.ndarray = field(compare=False)  # HxWx3 uint8, H and W multiples of 8
    prompt: str
    seed: int
    negative_prompt: str | None = None
    anchor: int | None = None

    def __post_init__(self) -> None:
        shape, dtype = getattr(self.image, "shape", ()), getattr(self.image, "dtype", type(self.image).__name__)
        if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
            raise ValueError(f"a frame is an HxWx3 uint8 array, not {dtype} of shape {shape}")
        if not shape[0] or not shape[1] or shape[0] % 8 or shape[1] % 8:
            raise ValueError(f"frame sides must be positive multiples of 8 (latents are 1/8 of the image), not {shape[:2]}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed {self.seed} is outside 0..{MAX_SEED}")


@dataclass(frozen=True)
class FrameBatch:
    """Frames and the anchors they refer to, rendered in one pipeline call.

    Anchors are rows of the same call (each anchored to itself), so a frame
    and its anchor are denoised step by step together; returning the
    rendered anchors lets a video job keep them as frames too.
    """

    frames: list[FrameJob]
    anchors: list[FrameJob]
    steps: int
    strength: float
    guidance_scale: float
    consistency: Consistency = "none"

    def __post_init__(self) -> None:
        if self.consistency not in ("none", "anchor"):
            raise ValueError(f"consistency must be 'none' or 'anchor', not {self.consistency!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if not 0 < self.strength <= 1 or int(self.steps * self.strength) < 1:
            raise ValueError(f"strength {self.strength} leaves no denoising step out of {self.steps}")
        for i, frame in enumerate(self.frames):
            if frame.anchor is not None and not 0 <= frame.anchor < len(self.anchors):
                raise ValueError(f"frame {i} names anchor {frame.anchor}, but the batch has {len(self.anchors)} anchors")
        sizes = {job.image.shape for job in self.rows}
        if len(sizes) > 1:
            raise ValueError(f"frames and anchors of one batch must share one size, not {sorted(sizes)}")

    @property
    def rows(self) -> list[FrameJob]:
        """Pipeline rows in call order: anchors first, then frames."""
        return [*self.anchors, *self.frames]

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of every row; ``None`` for an empty batch."""
        rows = self.rows
        return (int(rows[0].image.shape[0]), int(rows[0].image.shape[1])) if rows else None

    def batch_key(self) -> tuple:
        """Equal keys: the batches' rows could share one pipeline call (same size, schedule, guidance, mode)."""
        return ("restyle", self.size, self.steps, self.strength, self.guidance_scale, self.consistency)


def decode_image(data_b64: str, width: int, height: int) -> Image:
    """A base64 image as RGB at the target size; anything unreadable is a 400 on ``image``."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data_b64, validate=True)
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest("image", f"image is not a readable PNG, JPEG or WebP file ({exc.__class__.__name__})") from None
    return rgb if rgb.size == (width, height) else rgb.resize((width, height), Image.Resampling.LANCZOS)


class GeneratedImage(BaseModel):
    b64_png: str
    seed: int
    batch_size: int = Field(description="Images rendered in the same pipeline call as this one")


class ImageResponse(BaseModel):
    model: str
    data: list[GeneratedImage]
    replica_seconds: float = Field(description="This request's share of replica time: batch time split over its images")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, so the front door can pass it on unchanged."""

    error: ErrorBody
