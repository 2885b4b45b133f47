"""Cues from shots: one per narrated shot, on the shot's frames; SRT text; nothing FFmpeg would read as markup."""

from __future__ import annotations

from pipelines.stages.story.shotlist import TimedShot
from pipelines.stages.story.subtitles import Cue, ass_dialogue, cues, srt, srt_time, subtitle_text


def shot(index: int, start: int, end: int, narration: str) -> TimedShot:
    return TimedShot(index=index, visual="v", narration=narration, camera="static", duration_s=(end - start) / 24,
                     start_frame=start, end_frame=end, start_s=start / 24, end_s=end / 24)


def test_one_cue_per_narrated_shot_on_its_frames() -> None:
    listed = [shot(1, 0, 48, "Once upon a time"), shot(2, 48, 60, ""), shot(3, 60, 100, "the end")]
    assert cues(listed, 24) == [Cue(0, 2000, "Once upon a time"), Cue(2500, 4167, "the end")]


def test_srt_text() -> None:
    assert srt_time(3_723_004) == "01:02:03,004"
    assert srt([Cue(0, 2000, "a"), Cue(2500, 4167, "b")]) == b"1\n00:00:00,000 --> 00:00:02,000\na\n\n2\n00:00:02,500 --> 00:00:04,167\nb\n"


def test_no_markup_reaches_the_encoder() -> None:
    assert subtitle_text(r" a {\b1} b \N c ") == "a (/b1) b /N c"
    assert ass_dialogue(2, Cue(0, 1, "hi, there")) == b"2,0,Default,,0,0,0,,hi, there"
