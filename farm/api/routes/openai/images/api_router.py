"""POST /v1/images/generations (JSON) and /v1/images/edits (multipart), HTTP only."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from farm.api.routes.openai.deps import GeneratingCaller, GenerationDep, RuntimeDep
from farm.api.routes.openai.errors import SERVE_RESPONSES
from farm.api.routes.openai.images.serving import render
from farm.api.routes.openai.route import OpenAIRoute
from farm.openai.errors import OpenAIError
from farm.openai.images import (
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    SIZE_PATTERN,
    ImageGenerationRequest,
    ImagesResponse,
    ResponseFormat,
)

router = APIRouter(tags=["openai"], route_class=OpenAIRoute, responses=SERVE_RESPONSES)


@router.post("/v1/images/generations", response_model=ImagesResponse, response_model_exclude_none=True)
async def generations(body: ImageGenerationRequest, caller: GeneratingCaller, gen: GenerationDep, rt: RuntimeDep) -> Response:
    """Text to image (`client.images.generate`)."""
    return await render(gen, rt, caller, body, "images.generations")


@router.post("/v1/images/edits", response_model=ImagesResponse, response_model_exclude_none=True)
async def edits(
    caller: GeneratingCaller,
    gen: GenerationDep,
    rt: RuntimeDep,
    prompt: Annotated[str, Form(min_length=1, max_length=MAX_PROMPT_CHARS)],
    image: Annotated[list[UploadFile] | None, File(description="The input image (PNG, JPEG or WebP)")] = None,
    image_list: Annotated[list[UploadFile] | None, File(alias="image[]", description="Same as `image` (the client's list form)")] = None,
    mask: Annotated[UploadFile | None, File(description="Not supported: edits are image-to-image")] = None,
    model: Annotated[str | None, Form(max_length=200)] = None,
    n: Annotated[int, Form(ge=1, le=MAX_N)] = 1,
    size: Annotated[str | None, Form(pattern=SIZE_PATTERN)] = None,
    response_format: Annotated[ResponseFormat, Form()] = "url",
    negative_prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    steps: Annotated[int | None, Form(ge=1, le=MAX_STEPS)] = None,
    guidance_scale: Annotated[float | None, Form(ge=0, le=50)] = None,
    seed: Annotated[int | None, Form(ge=0, le=MAX_SEED)] = None,
    strength: Annotated[float, Form(gt=0, le=1, description="How far from the input image to go")] = 0.75,
) -> Response:
    """Image to image (`client.images.edit`): the prompt guides a re-render of the input image."""
    if mask is not None:
        raise OpenAIError(400, "masks are not supported: edits re-render the whole image (image-to-image)", param="mask")
    files = [*(image or []), *(image_list or [])]
    if len(files) != 1:
        raise OpenAIError(400, f"send exactly one input image, got {len(files)}", param="image")
    limit = gen.settings.serve.max_image_upload_bytes
    data = await files[0].read(limit + 1)
    if not data:
        raise OpenAIError(400, "the input image is empty", param="image")
    if len(data) > limit:
        raise OpenAIError(400, f"the input image is larger than {limit} bytes", param="image")
    request = ImageGenerationRequest(prompt=prompt, model=model, n=n, size=size, response_format=response_format,
                                     negative_prompt=negative_prompt, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return await render(gen, rt, caller, request, "images.edits", image_b64=base64.b64encode(data).decode(), strength=strength)
