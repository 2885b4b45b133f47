"""The OpenAI Images API as the farm takes it, with a few diffusion extensions.

OpenAI fields: ``prompt``, ``model``, ``n``, ``size`` (``WxH`` or ``auto``),
``response_format`` (``url`` or ``b64_json``), and ``quality`` / ``style`` /
``user``, which are accepted and ignored. Extensions (``extra_body`` in the
``openai`` client): ``negative_prompt``, ``steps``, ``guidance_scale``,
``seed`` (image ``i`` of a request uses ``seed + i``, so a seed gives the same
images whatever else is rendered alongside) and, for edits, ``strength``.
Unknown fields are refused (400 naming them) rather than silently ignored.
Sizes are checked against the model's limits by the deployment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PROMPT_CHARS = 4000
MAX_N = 10
MAX_STEPS = 100
MAX_SEED = 2**32 - 1
SIZE_PATTERN = r"^(auto|[0-9]{1,5}x[0-9]{1,5})$"

Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
ResponseFormat = Literal["url", "b64_json"]


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    model: str | None = Field(default=None, max_length=200, description="A diffusion model; default: the first one served")
    n: int = Field(default=1, ge=1, le=MAX_N)
    size: str | None = Field(default=None, pattern=SIZE_PATTERN, description="WIDTHxHEIGHT; default: the model's native size")
    response_format: ResponseFormat = "url"
    output_format: Literal["png"] | None = None
    quality: str | None = Field(default=None, max_length=32, description="Accepted, ignored")
    style: str | None = Field(default=None, max_length=32, description="Accepted, ignored")
    user: str | None = Field(default=None, max_length=256, description="Accepted, ignored")
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS, description="Denoising steps")
    guidance_scale: float | None = Field(default=None, ge=0, le=50)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    def diffusion_body(self, **edit: Any) -> dict[str, Any]:
        """The diffusion deployment's request (``serve.diffusion.protocol.ImageRequest``) for this one.

        The size as width and height, unset fields left out (the model's
        defaults apply); ``edit`` adds an edit's ``image_b64`` and ``strength``.
        The front door posts it; ``batch.images`` renders it.
        """
        width, height = parse_size(self.size)
        fields = {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "n": self.n, "width": width, "height": height,
                  "steps": self.steps, "guidance_scale": self.guidance_scale, "seed": self.seed, **edit}
        return {k: v for k, v in fields.items() if v is not None}


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = Field(default=None, description="Presigned link to the image, stored as an asset of the project")
    revised_prompt: str | None = None
    asset_id: str | None = Field(default=None, description="The stored asset (url responses)")
    seed: int


class ImagesResponse(BaseModel):
    created: int
    model: str
    data: list[ImageData]


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """``WIDTHxHEIGHT`` (a valid ``size``) as numbers; ``None`` / ``auto`` mean the model's native size."""
    if size is None or size == "auto":
        return None, None
    width, height = size.split("x")
    return int(width), int(height)
