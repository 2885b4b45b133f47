"""`video.shots`: each input video split into shots."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kinds.base import KindInfo, Output, VideoInputsSpec

SHOT_OUTPUTS = ("keyframes", "clips", "contact_sheet", "json", "csv", "edl")
ShotOutput = Literal["keyframes", "clips", "contact_sheet", "json", "csv", "edl"]


class VideoShotsSpec(VideoInputsSpec):
    """Splits videos into shots: boundaries, keyframes, per-shot clips, a contact sheet, JSON/CSV/EDL."""

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

    def max_failed_fraction(self) -> float:
        return self.fail_job_above


KIND = KindInfo(
    "video.shots", VideoShotsSpec, pipeline="pipelines.video_shots",
    outputs={
        "shots": Output("video_shots", "one", "the shots as frame ranges and times (<video>.shots.json)"),
        "keyframes": Output("image", "many", "keyframe images of every shot (<video>.shot-NNN.jpg)"),
        "clips": Output("video", "many", "one clip per shot (<video>.shot-NNN.mp4)"),
        "contact_sheet": Output("image", "one", "every shot's thumbnail on one sheet (<video>.contact.jpg)"),
        "shots_csv": Output("table", "one", "the shots as CSV (<video>.shots.csv)"),
        "edl": Output("edit_list", "one", "the shots as a CMX 3600 EDL (<video>.edl)"),
    },
)
