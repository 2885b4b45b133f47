"""`video.restyle`: every frame of each input video re-rendered through a diffusion model, with its sound."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kinds.base import KindInfo, ModelUse, Output, VideoInputsSpec, known_model
from kinds.video_shots import VideoShotsSpec

MAX_SEED = 2**32 - 1
SeedPolicy = Literal["per_shot", "per_video", "per_frame"]
Consistency = Literal["none", "anchor"]


class VideoRestyleSpec(VideoInputsSpec):
    """Renders every frame of videos through a diffusion model (image-to-image), shot by shot, audio kept."""

    shots_asset_ids: list[str] | None = Field(
        default=None, max_length=10_000,
        description="the videos' shots from earlier video.shots jobs (<video>.shots.json), aligned with asset_ids; "
        "default: detect them in this job",
    )
    prompt: str = Field(min_length=1, max_length=2000, description="the look every frame is rendered into")
    negative_prompt: str | None = Field(default=None, max_length=2000)
    shot_prompts: dict[int, str] = Field(
        default_factory=dict, max_length=10_000,
        description="per shot (numbered from 1, as in <video>.shot-001): a prompt that replaces `prompt` there",
    )
    model: str | None = Field(default=None, max_length=200, description="diffusion model by registry name; default: the registry's first")
    strength: float = Field(default=0.5, gt=0, le=1, description="how far from the source frame to go (0: unchanged, 1: ignore it)")
    steps: int = Field(default=20, ge=1, le=100, description="diffusion steps (image-to-image runs strength × steps of them)")
    guidance_scale: float = Field(default=7.5, ge=0, le=30)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    seed_policy: SeedPolicy = Field(
        default="per_shot", description="per_shot: every frame of a shot starts from the same noise; per_video: one noise; per_frame: new noise each frame",
    )
    consistency: Consistency = Field(
        default="anchor", description="anchor: each frame also attends to its shot's keyframe (cross-frame attention); none: frames alone",
    )
    short_side: int = Field(default=512, ge=64, le=2048, description="working resolution: short side in pixels (a multiple of 8), aspect kept")
    output_size: Literal["source", "working"] = Field(default="source", description="scale the result back to the source size, or keep the working size")
    chunk_size: int = Field(default=16, ge=1, le=10_000, description="frames per parallel render chunk (chunks never cross a cut)")
    preview: bool = Field(default=False, description="render only each shot's keyframe into a contact sheet, no video")
    crf: int = Field(default=18, ge=0, le=51, description="H.264 quality of the result (lower is better)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    max_frames: int = Field(default=54_000, ge=1, le=10_000_000, description="a longer video fails as an item (known after probing)")
    detector: Literal["content", "adaptive"] = "content"
    threshold: float | None = Field(default=None, gt=0, le=255, description="shot detection level (see video.shots)")
    min_shot_len: int = Field(default=6, ge=1, le=1_000_000, description="frames; closer cuts are dropped")
    fail_job_above: float = Field(default=0.99, ge=0, le=1, description="fail the job when more than this share of videos failed")

    @field_validator("short_side")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (latents are 1/8 of the image), e.g. {value - value % 8 or 8}")
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_model(value, "diffusion", info)

    @field_validator("shot_prompts")
    @classmethod
    def _shot_numbers(cls, value: dict[int, str]) -> dict[int, str]:
        for shot, text in value.items():
            if shot < 1:
                raise ValueError(f"shots are numbered from 1, not {shot}")
            if not 1 <= len(text) <= 2000:
                raise ValueError(f"the prompt of shot {shot} must be 1 to 2000 characters")
        return value

    @model_validator(mode="after")
    def _shots_align(self) -> VideoRestyleSpec:
        if self.shots_asset_ids is not None and len(self.shots_asset_ids) != len(self.asset_ids):
            raise ValueError(f"shots_asset_ids must align with asset_ids: {len(self.shots_asset_ids)} for {len(self.asset_ids)} videos")
        return self

    def max_failed_fraction(self) -> float:
        return self.fail_job_above

    def models_used(self) -> list[ModelUse]:
        return [ModelUse("diffusion", self.model)]

    def shot_detection(self) -> VideoShotsSpec:
        """The `video.shots` settings this job detects shots with."""
        return VideoShotsSpec(asset_ids=["-"], detector=self.detector, threshold=self.threshold, min_shot_len=self.min_shot_len)


KIND = KindInfo(
    "video.restyle", VideoRestyleSpec, pipeline="pipelines.video_restyle",
    outputs={
        "video": Output("video", "one", "the restyled video with the source's audio (<video>.restyled.mp4)"),
        "contact_sheet": Output("image", "one", "each shot's keyframe before and after (<video>.restyle.jpg)"),
        "report": Output("report", "one", "per-shot flicker, per-frame checksums and the settings (<video>.restyle.json)"),
    },
)
