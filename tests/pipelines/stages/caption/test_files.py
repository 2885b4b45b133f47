"""Caption files a player or an editor reads: whatever the model wrote, one valid cue per shot."""

from __future__ import annotations

import io
from datetime import timedelta

import srt
import webvtt

from pipelines.stages.caption.files import NO_CAPTION, ShotCaption, captions_srt, captions_vtt, cue_text
from pipelines.stages.payloads import Shot

# What a random-weight model writes: control characters, a cue arrow, blank lines, nothing at all.
TEXTS = ["A boat\x03 at\n\ndawn --> the harbour", "", "\u2028  rain \x00on\tthe roof  "]
SHOTS = [Shot(1, 0, 16, 0.0, 16 / 24, (8,)), Shot(2, 16, 28, 16 / 24, 28 / 24, (22,)), Shot(3, 28, 48, 28 / 24, 2.0, (38,))]


def captions() -> list[ShotCaption]:
    return [ShotCaption(s, s.keyframes, t, 30, 17, 5, "stop", 3) for s, t in zip(SHOTS, TEXTS)]


def test_hostile_model_text_still_makes_one_cue_per_shot_at_the_shot_times() -> None:
    cues = list(srt.parse(captions_srt(captions()).decode()))
    vtt = list(webvtt.from_buffer(io.StringIO(captions_vtt(captions()).decode())))
    assert [c.content for c in cues] == [v.text for v in vtt] == ["A boat at dawn -> the harbour", NO_CAPTION, "rain on the roof"]
    assert [c.index for c in cues] == [1, 2, 3] and [v.identifier for v in vtt] == ["shot-001", "shot-002", "shot-003"]
    ms = [round(s.start_time * 1000) for s in SHOTS]
    assert [c.start for c in cues] == [timedelta(milliseconds=m) for m in ms]  # 0.6667 s → 667 ms in both files
    assert [v.start for v in vtt] == ["00:00:00.000", "00:00:00.667", "00:00:01.167"]
    assert [c.end for c in cues][-1] == timedelta(seconds=2) and vtt[-1].end == "00:00:02.000"
    assert cue_text("a-->b") == "a->b"
