"""`story.animatic`: each story → a shot list written by an LLM → keyframes by diffusion → an MP4 animatic with subtitles."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kinds.base import JobSpec, KindInfo, ModelUse, Output, known_model

MAX_SEED = 2**32 - 1
MAX_SHOTS = 24  # per story: the shot list's schema bounds its array by the spec's max_shots
STORY_CHARS_CAP = 200_000  # the most any spec may allow per story (max_story_chars)
Timing = Literal["llm", "narration"]
Subtitles = Literal["srt", "soft", "burn"]


class StoryText(BaseModel):
    """One story given inline: its title names its outputs, its text is what the LLM reads."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=STORY_CHARS_CAP)

    @field_validator("title", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (only white space)")
        return value


class StoryAnimaticSpec(JobSpec):
    """Turns stories into animatics: an LLM shot list, diffusion keyframes, an MP4 with subtitles and a storyboard."""

    # max_story_chars comes before stories: their validator reads it
    max_story_chars: int = Field(default=20_000, ge=1, le=STORY_CHARS_CAP, description="a longer story is refused at submit (or, from an asset, fails as an item)")
    stories: list[StoryText] = Field(default_factory=list, max_length=10_000, description="stories given inline, one item each")
    asset_ids: list[str] = Field(default_factory=list, max_length=10_000,
                                 description="text or Markdown assets, one story each (items after the inline ones); a leading '# ' heading is the title")
    min_shots: int = Field(default=2, ge=1, le=MAX_SHOTS, description="fewest shots per story")
    max_shots: int = Field(default=4, ge=1, le=MAX_SHOTS, description="most shots per story (bounds the LLM's output: keep it small for small contexts)")
    shot_text_chars: int = Field(default=40, ge=8, le=400, description="longest visual description and narration the LLM may write per shot")
    timing: Timing = Field(default="llm", description="llm: the LLM proposes each shot's duration within the bounds; narration: from the narration's words")
    min_shot_s: int = Field(default=1, ge=1, le=60, description="shortest shot, seconds")
    max_shot_s: int = Field(default=6, ge=1, le=60, description="longest shot, seconds")
    words_per_minute: int = Field(default=150, ge=30, le=600, description="timing=narration: reading speed of the narration")
    style: str = Field(default="", max_length=500, description="added to every keyframe prompt")
    negative_prompt: str | None = Field(default=None, max_length=500)
    width: int = Field(default=512, ge=64, le=1024, description="animatic and keyframe width (a multiple of 8)")
    height: int = Field(default=288, ge=64, le=1024, description="animatic and keyframe height (a multiple of 8)")
    fps: int = Field(default=24, ge=1, le=60)
    llm_model: str | None = Field(default=None, max_length=200, description="LLM by registry name; default: the registry's first")
    diffusion_model: str | None = Field(default=None, max_length=200, description="diffusion model by registry name; default: the registry's first")
    temperature: float = Field(default=0.7, ge=0, le=2, description="LLM sampling temperature")
    candidates: int = Field(default=1, ge=1, le=4, description="answers sampled per story in the LLM pass; the first valid one is kept")
    retries: int = Field(default=2, ge=0, le=5, description="further LLM passes for stories with no valid candidate (each starts an engine)")
    steps: int = Field(default=20, ge=1, le=100, description="diffusion steps per keyframe")
    guidance_scale: float = Field(default=7.5, ge=0, le=30)
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="with the story and shot, fixes each keyframe's noise: a re-run reproduces it")
    variants: int = Field(default=1, ge=1, le=4, description="keyframes per shot; the first is the animatic's")
    subtitles: list[Subtitles] = Field(default_factory=lambda: ["srt", "soft"], max_length=3,
                                       description="srt: a <story>.srt sidecar; soft: a subtitle track in the MP4; burn: drawn into the picture")
    crossfade_s: float = Field(default=0.0, ge=0, le=2, description="crossfade between shots (0: cuts); the animatic's length is unchanged")
    motion: float = Field(default=0.12, ge=0, le=0.5, description="how far the slow pan/zoom moves over a shot (share of the frame)")
    crf: int = Field(default=20, ge=0, le=51, description="H.264 quality (lower is better)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    fail_job_above: float = Field(default=0.99, ge=0, le=1, description="fail the job when more than this share of stories failed")

    @field_validator("stories")
    @classmethod
    def _within_limit(cls, value: list[StoryText], info: ValidationInfo) -> list[StoryText]:
        limit = info.data.get("max_story_chars")
        for n, story in enumerate(value):
            if limit is not None and len(story.text) > limit:
                raise ValueError(f"stories[{n}].text has {len(story.text)} characters, more than max_story_chars ({limit})")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (latents are 1/8 of the image), e.g. {value - value % 8 or 8}")
        return value

    @field_validator("llm_model")
    @classmethod
    def _known_llm(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_model(value, "llm", info)

    @field_validator("diffusion_model")
    @classmethod
    def _known_diffusion(cls, value: str | None, info: ValidationInfo) -> str | None:
        return known_model(value, "diffusion", info)

    @field_validator("subtitles")
    @classmethod
    def _unique(cls, value: list[Subtitles]) -> list[Subtitles]:
        if len(set(value)) != len(value):
            raise ValueError("name each subtitle form once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StoryAnimaticSpec:
        if not self.stories and not self.asset_ids:
            raise ValueError("give stories or asset_ids (or both)")
        if self.min_shots > self.max_shots:
            raise ValueError(f"min_shots ({self.min_shots}) is above max_shots ({self.max_shots})")
        if self.min_shot_s > self.max_shot_s:
            raise ValueError(f"min_shot_s ({self.min_shot_s}) is above max_shot_s ({self.max_shot_s})")
        return self

    def total_items(self) -> int | None:
        return len(self.stories) + len(self.asset_ids)

    def max_failed_fraction(self) -> float:
        return self.fail_job_above

    def models_used(self) -> list[ModelUse]:
        """The LLM, then the diffusion model: one engine each, one after the other."""
        return [ModelUse("llm", self.llm_model), ModelUse("diffusion", self.diffusion_model)]


KIND = KindInfo(
    "story.animatic", StoryAnimaticSpec, pipeline="pipelines.story_animatic",
    outputs={
        "shotlist": Output("story_shotlist", "one", "the shots the LLM planned, with timing (<story>.shotlist.json)"),
        "animatic": Output("video", "one", "keyframes held with a slow pan/zoom, subtitled (<story>.animatic.mp4)"),
        "subtitles": Output("captions", "one", "the narration cued to the shots (<story>.srt)"),
        "keyframes": Output("image", "many", "one keyframe per shot and its variants (<story>.shot-NN.png, <story>.shot-NN.vK.png)"),
        "storyboard": Output("image", "one", "keyframes with shot number, duration and description (<story>.storyboard.jpg)"),
        "shots": Output("video_shots", "one", "the animatic's shots in video.shots' format (<story>.shots.json)"),
        "report": Output("report", "one", "the job's figures: LLM passes, diffusion batch sizes, settings (story-animatic.report.json)"),
    },
)
