"""Shot lists as files post-production reads: ``shots.json``, ``shots.csv`` and a CMX 3600 EDL.

Timecodes count frames at the video's nominal rate from 00:00:00:00;
29.97 and 59.94 fps use SMPTE drop-frame (``;`` before the frames).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from pipelines.stages.payloads import Shot, Transition, Video


def is_drop_frame(rate: Fraction) -> bool:
    return rate.denominator == 1001 and round(rate) in (30, 60)


def timecode(frame: int, rate: Fraction) -> str:
    """HH:MM:SS:FF of a frame number (drop-frame HH:MM:SS;FF at 29.97/59.94)."""
    nominal = max(1, round(rate))
    drop = is_drop_frame(rate)
    if drop:
        d = nominal // 15  # frame numbers skipped each minute but every tenth
        per_ten, per_minute = nominal * 600 - 9 * d, nominal * 60 - d
        tens, rest = divmod(frame, per_ten)
        frame += 9 * d * tens + (d * ((rest - d) // per_minute) if rest > d else 0)
    ff, seconds = frame % nominal, frame // nominal
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{';' if drop else ':'}{ff:02d}"


def shots_json(video: Video, shots: Sequence[Shot], transitions: Sequence[Transition], detector: Mapping[str, Any],
               outputs: Mapping[int, Mapping[str, Any]] | None = None) -> bytes:
    """The machine-readable shot list; ``outputs`` maps a shot index to its clip and keyframe assets."""
    doc = {
        "video": {
            "name": video.source.name, "asset_id": video.source.asset_id, "codec": video.codec, "pix_fmt": video.pix_fmt,
            "duration": round(video.duration, 6), "variable_fps": video.variable_fps, "rotation": video.rotation,
            "has_audio": video.has_audio, "audio_codec": video.audio_codec,
        },
        "fps": video.fps,
        "rate": f"{video.rate.numerator}/{video.rate.denominator}",
        "frames": video.frames,
        "resolution": [video.width, video.height],
        "detector": dict(detector),
        "transitions": [
            {"frame": t.frame, "kind": t.kind, "start_frame": t.start, "end_frame": t.end, "score": round(t.score, 3)}
            for t in transitions
        ],
        "shots": [
            {
                "index": s.index, "start_frame": s.start, "end_frame": s.end, "frames": s.frames,
                "start_time": round(s.start_time, 6), "end_time": round(s.end_time, 6),
                "start_timecode": timecode(s.start, video.rate), "end_timecode": timecode(s.end, video.rate),
                "keyframes": list(s.keyframes), "transition_in": s.transition_in,
                **(outputs or {}).get(s.index, {}),
            }
            for s in shots
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


CSV_COLUMNS = ["shot", "start_frame", "end_frame", "frames", "start_time", "end_time",
               "start_timecode", "end_timecode", "transition_in", "keyframes"]


def shots_csv(video: Video, shots: Sequence[Shot]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in shots:
        writer.writerow([s.index, s.start, s.end, s.frames, f"{s.start_time:.6f}", f"{s.end_time:.6f}",
                         timecode(s.start, video.rate), timecode(s.end, video.rate), s.transition_in or "",
                         " ".join(map(str, s.keyframes))])
    return buf.getvalue().encode()


def edl(video: Video, shots: Sequence[Shot], title: str | None = None) -> bytes:
    """CMX 3600: one cut event per shot, source and record timecodes alike (the shots in order)."""
    drop = is_drop_frame(video.rate)
    lines = [f"TITLE: {(title or video.source.stem)[:70]}", f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}", ""]
    for s in shots:
        a, b = timecode(s.start, video.rate), timecode(s.end, video.rate)
        lines.append(f"{s.index:03d}  AX       V     C        {a} {b} {a} {b}")
        lines.append(f"* FROM CLIP NAME: {video.source.name}")
        if s.transition_in == "fade":
            lines.append("* COMMENT: FADE THROUGH BLACK INTO THIS SHOT")
        lines.append("")
    return "\n".join(lines).encode()
