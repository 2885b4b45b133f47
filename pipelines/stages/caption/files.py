"""A video's captions as files: ``captions.json`` for machines, SRT and WebVTT for players and editors.

Each shot is one cue from its start time to its end time. Subtitle text is
one line: control characters dropped, whitespace collapsed and the cue
arrow defused, because a model (a random-weight one above all) may write
anything; the JSON keeps the caption as the model wrote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import srt
import webvtt

from pipelines.stages.payloads import Shot, Video

NO_CAPTION = "[no caption]"


@dataclass(frozen=True)
class ShotCaption:
    """One shot's caption and what it cost."""

    shot: Shot
    frames: tuple[int, ...]
    text: str
    prompt_tokens: int
    image_tokens: int
    completion_tokens: int
    finish_reason: str
    batch_size: int


def cue_text(text: str) -> str:
    """The caption as one subtitle line."""
    clean = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", text).replace("-->", "->")
    clean = " ".join(clean.split())
    return clean or NO_CAPTION


def captions_json(video: Video, captions: Sequence[ShotCaption], *, model: str, prompt: str, shots_from: Mapping[str, Any]) -> bytes:
    doc = {
        "video": {"name": video.source.name, "asset_id": video.source.asset_id, "frames": video.frames, "fps": video.fps,
                  "duration": round(video.duration, 6), "resolution": [video.width, video.height]},
        "model": model,
        "prompt": prompt,
        "shots_from": dict(shots_from),
        "mean_batch_size": round(sum(c.batch_size for c in captions) / len(captions), 3) if captions else None,
        "shots": [
            {"index": c.shot.index, "start_frame": c.shot.start, "end_frame": c.shot.end,
             "start_time": round(c.shot.start_time, 6), "end_time": round(c.shot.end_time, 6),
             "sampled_frames": list(c.frames), "caption": c.text, "prompt_tokens": c.prompt_tokens,
             "image_tokens": c.image_tokens, "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
             "batch_size": c.batch_size}
            for c in captions
        ],
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _ms(seconds: float) -> timedelta:
    """Subtitle times are in milliseconds: rounded, as `vtt_time` does, so both files agree."""
    return timedelta(milliseconds=round(seconds * 1000))


def captions_srt(captions: Sequence[ShotCaption]) -> bytes:
    cues = [srt.Subtitle(index=c.shot.index, start=_ms(c.shot.start_time), end=_ms(c.shot.end_time), content=cue_text(c.text))
            for c in captions]
    return srt.compose(cues, reindex=False).encode()


def vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def captions_vtt(captions: Sequence[ShotCaption]) -> bytes:
    doc = webvtt.WebVTT(captions=[
        webvtt.Caption(start=vtt_time(c.shot.start_time), end=vtt_time(c.shot.end_time), text=cue_text(c.text),
                       identifier=f"shot-{c.shot.index:03d}")
        for c in captions
    ])
    return (doc.content.rstrip("\n") + "\n").encode()
