"""Shots read from an earlier `video.shots` output (``<video>.shots.json``) instead of detected again.

The document is checked against the video it is used for: its shots must
tile the probed video's frames one after another, so a shot list made from
another video is refused rather than silently misapplied.
"""

from __future__ import annotations

import json

from pipelines.stages.payloads import Probed, Shot


def read_shots(data: bytes, name: str, probed: Probed) -> list[Shot]:
    """The shots of a ``shots.json`` document; ``ValueError`` (saying why) when it is not one for this video."""
    try:
        doc = json.loads(data)
        shots = [Shot(int(s["index"]), int(s["start_frame"]), int(s["end_frame"]), float(s["start_time"]), float(s["end_time"]),
                      tuple(int(k) for k in s.get("keyframes") or ()), s.get("transition_in")) for s in doc["shots"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{name} is not a video.shots shot list ({type(exc).__name__}: {exc})") from None
    frames = probed.video.frames
    if not shots or shots[0].start != 0 or shots[-1].end != frames or any(a.end != b.start for a, b in zip(shots, shots[1:])):
        raise ValueError(f"{name} does not cover the video's {frames} frames shot after shot (made from another video?)")
    return shots
