"""`video.caption`: every shot of each input video described by a vision-language model, as JSON and subtitles."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kinds.base import KindInfo, ModelUse, Output, VideoInputsSpec, known_model

#: What a prompt template may name; each is filled per shot.
PROMPT_FIELDS = ("video", "shot", "shots", "start", "end", "duration")
DEFAULT_PROMPT = "Describe shot {shot} of {shots} in one sentence: who or what is seen, and what happens."


class VideoCaptionSpec(VideoInputsSpec):
    """Captions every shot of videos with a vision-language model: per-shot JSON, SRT and WebVTT."""

    shots_asset_ids: list[str | None] | None = Field(
        default=None, max_length=10_000,
        description="the videos' shots from earlier video.shots jobs (<video>.shots.json), aligned with asset_ids "
        "(null: detect that video's shots here); default: detect them in this job",
    )
    model: str | None = Field(default=None, max_length=200, description="vision-language model by registry name; default: the registry's first")
    prompt: str = Field(
        default=DEFAULT_PROMPT, min_length=1, max_length=2000,
        description=f"what the model is asked per shot; may name {', '.join('{' + f + '}' for f in PROMPT_FIELDS)}",
    )
    frames_per_shot: int = Field(default=1, ge=1, le=8, description="frames sampled per shot, evenly spread (1: the middle frame)")
    frame_short_side: int = Field(
        default=224, ge=80, le=1024,
        description="short side (pixels) frames are decoded at before the model's processor",
    )
    max_tokens: int = Field(default=48, ge=1, le=512, description="longest caption, in tokens")
    detector: Literal["content", "adaptive"] = "content"
    threshold: float | None = Field(default=None, gt=0, le=255, description="shot detection level (see video.shots)")
    min_shot_len: int = Field(default=6, ge=1, le=1_000_000, description="frames; closer cuts are dropped")
    fail_job_above: float = Field(default=0.99, ge=0, le=1, description="fail the job when more than this share of videos failed")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_model(value, "vlm", info)

    @field_validator("prompt")
    @classmethod
    def _prompt_fields(cls, value: str) -> str:
        try:
            named = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(named - set(PROMPT_FIELDS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; a prompt may name {', '.join('{' + f + '}' for f in PROMPT_FIELDS)}")
        return value

    @model_validator(mode="after")
    def _shots_align(self) -> VideoCaptionSpec:
        if self.shots_asset_ids is not None and len(self.shots_asset_ids) != len(self.asset_ids):
            raise ValueError(f"shots_asset_ids must align with asset_ids: {len(self.shots_asset_ids)} for {len(self.asset_ids)} videos")
        return self

    def max_failed_fraction(self) -> float:
        return self.fail_job_above

    def models_used(self) -> list[ModelUse]:
        return [ModelUse("vlm", self.model)]


KIND = KindInfo(
    "video.caption", VideoCaptionSpec, pipeline="pipelines.video_caption",
    outputs={
        "captions": Output("captions", "one", "per shot: index, frames, times, caption and token counts (<video>.captions.json)"),
        "srt": Output("captions", "one", "one subtitle cue per shot (<video>.captions.srt)"),
        "vtt": Output("captions", "one", "one WebVTT cue per shot (<video>.captions.vtt)"),
    },
)
