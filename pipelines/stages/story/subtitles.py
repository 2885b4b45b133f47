"""Subtitle cues from a shot list: SRT text, and the ASS lines FFmpeg's mov_text encoder reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.stages.story.shotlist import TimedShot

#: The style header FFmpeg's text subtitle encoders need (mov_text reads it for defaults).
ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


@dataclass(frozen=True)
class Cue:
    """One subtitle: text shown from ``start_ms`` to ``end_ms``."""

    start_ms: int
    end_ms: int
    text: str


def subtitle_text(narration: str) -> str:
    """Narration safe in every subtitle format: no ASS override braces or backslashes (SRT has no escapes)."""
    return narration.replace("\\", "/").replace("{", "(").replace("}", ")").strip()


def cues(shots: Sequence[TimedShot], fps: int) -> list[Cue]:
    """One cue per shot with narration, cued to the shot's frames (milliseconds, rounded)."""
    out = []
    for s in shots:
        text = subtitle_text(s.narration)
        if text:
            out.append(Cue(round(s.start_frame * 1000 / fps), round(s.end_frame * 1000 / fps), text))
    return out


def srt_time(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def srt(cue_list: Sequence[Cue]) -> bytes:
    """The cues as an SRT file."""
    blocks = [f"{n}\n{srt_time(c.start_ms)} --> {srt_time(c.end_ms)}\n{c.text}\n" for n, c in enumerate(cue_list, start=1)]
    return "\n".join(blocks).encode()


def ass_dialogue(n: int, cue: Cue) -> bytes:
    """The event line FFmpeg's subtitle encoders take (timing travels on the packet)."""
    return f"{n},0,Default,,0,0,0,,{cue.text}".encode()
