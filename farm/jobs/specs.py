"""Specs of the built-in job kinds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from farm.jobs.kinds import JobSpec, job_kind


@job_kind("debug.sleep", pipeline="pipelines.debug_sleep")
class DebugSleepSpec(JobSpec):
    """Sleeps per item and fails a share of items: exercises the job machinery on a real cluster."""

    items: int = Field(default=10, ge=0, le=100_000)
    delay_s: float = Field(default=0.1, ge=0, le=3600)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    fail_job_above: float = Field(default=1.0, ge=0, le=1, description="fail the job when this share of items failed")
    seed: int = 0

    def total_items(self) -> int:
        return self.items

    def max_failed_fraction(self) -> float:
        return self.fail_job_above


SHOT_OUTPUTS = ("keyframes", "clips", "contact_sheet", "json", "csv", "edl")
ShotOutput = Literal["keyframes", "clips", "contact_sheet", "json", "csv", "edl"]


@job_kind("video.shots", pipeline="pipelines.video_shots")
class VideoShotsSpec(JobSpec):
    """Splits videos into shots: boundaries, keyframes, per-shot clips, a contact sheet, JSON/CSV/EDL."""

    asset_ids: list[str] = Field(default_factory=list, max_length=10_000, description="the videos, one item each")
    project_id: str | None = Field(default=None, description="instead of asset_ids: every video in this project at submit time")
    detector: Literal["content", "adaptive"] = "content"
    threshold: float | None = Field(
        default=None, gt=0, le=255,
        description="content: frame-change score that makes a cut (default 27); adaptive: ratio to the rolling window (default 3)",
    )
    min_shot_len: int = Field(default=6, ge=1, le=1_000_000, description="frames; closer boundaries are dropped")
    fades: bool = Field(default=True, description="report fades through black as soft transitions (and split there)")
    chunk_size: int = Field(default=240, ge=16, le=1_000_000, description="frames per parallel decode chunk (edges move to keyframes)")
    keyframes_per_shot: int = Field(default=1, ge=1, le=16, description="images per shot, evenly spread; 1 is the middle frame")
    outputs: list[ShotOutput] = Field(default_factory=lambda: list(SHOT_OUTPUTS), description="which outputs to produce")
    clip_crf: int = Field(default=20, ge=0, le=51, description="H.264 quality of the clips (lower is better)")
    clip_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    fail_job_above: float = Field(default=0.99, ge=0, le=1, description="fail the job when more than this share of videos failed")

    @model_validator(mode="after")
    def _one_input(self) -> VideoShotsSpec:
        if bool(self.asset_ids) == bool(self.project_id):
            raise ValueError("give either asset_ids or project_id")
        return self

    def total_items(self) -> int | None:
        return len(self.asset_ids) or None

    def max_failed_fraction(self) -> float:
        return self.fail_job_above


class _BatchSpec(JobSpec):
    """A batch's job: the batch row names its input file and endpoint."""

    batch_id: str = Field(pattern=r"^batch_[0-9a-f]{28}$")
    max_lines: int = Field(default=50_000, ge=1)
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)

    def max_failed_fraction(self) -> float:
        return 1.0  # failed requests land in the error file; the batch still completes


@job_kind("batch.chat", pipeline="pipelines.batch_chat")
class BatchChatSpec(_BatchSpec):
    """OpenAI batch of /v1/chat/completions or /v1/completions requests, run with vLLM on Ray Data."""


@job_kind("batch.images", pipeline="pipelines.batch_images")
class BatchImagesSpec(_BatchSpec):
    """OpenAI batch of /v1/images/generations requests, run with the diffusion engine on Ray Data."""
