"""Shot lists (JSON, CSV, CMX 3600 EDL) and timecodes."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import pytest

from pipelines.stages.payloads import Shot, Source, Transition, Video
from pipelines.stages.shots.reports import edl, shots_csv, shots_json, timecode


def video(rate: Fraction = Fraction(24)) -> Video:
    return Video(source=Source(0, "trailer.final.mp4", asset_id="asset_1"), frames=96, fps=float(rate), rate=rate,
                 variable_fps=False, width=320, height=180, duration=4.0, codec="h264", pix_fmt="yuv420p", rotation=0,
                 has_audio=True, audio_codec="aac", time_base=Fraction(1, 12288))


SHOTS = [Shot(1, 0, 40, 0.0, 40 / 24, (20,)), Shot(2, 40, 96, 40 / 24, 4.0, (68,), "fade")]
TRANSITIONS = [Transition(40, "fade", 0.0, 30, 50)]


@pytest.mark.parametrize(("frame", "rate", "expected"), [
    (0, Fraction(24), "00:00:00:00"),
    (23, Fraction(24), "00:00:00:23"),
    (24 * 3661 + 5, Fraction(24), "01:01:01:05"),
    (25 * 60, Fraction(25), "00:01:00:00"),
    (1799, Fraction(30000, 1001), "00:00:59;29"),
    (1800, Fraction(30000, 1001), "00:01:00;02"),  # drop-frame skips ;00 and ;01
    (17982, Fraction(30000, 1001), "00:10:00;00"),  # …but not on the tenth minute
    (3600, Fraction(60000, 1001), "00:01:00;04"),
    (48, Fraction(24000, 1001), "00:00:02:00"),  # 23.976 is never drop-frame
])
def test_timecode(frame: int, rate: Fraction, expected: str) -> None:
    assert timecode(frame, rate) == expected


def test_json_holds_the_video_and_its_shots() -> None:
    doc = json.loads(shots_json(video(), SHOTS, TRANSITIONS, {"kind": "content", "threshold": 27.0},
                                {1: {"clip": {"name": "trailer.final.shot-001.mp4", "asset_id": "asset_2"}}}))
    assert doc["fps"] == 24.0 and doc["frames"] == 96 and doc["resolution"] == [320, 180]
    assert doc["video"]["name"] == "trailer.final.mp4" and doc["video"]["has_audio"] is True
    first, second = doc["shots"]
    assert first == {
        "index": 1, "start_frame": 0, "end_frame": 40, "frames": 40, "start_time": 0.0, "end_time": round(40 / 24, 6),
        "start_timecode": "00:00:00:00", "end_timecode": "00:00:01:16", "keyframes": [20], "transition_in": None,
        "clip": {"name": "trailer.final.shot-001.mp4", "asset_id": "asset_2"},
    }
    assert second["transition_in"] == "fade" and second["end_frame"] == 96
    assert doc["transitions"] == [{"frame": 40, "kind": "fade", "start_frame": 30, "end_frame": 50, "score": 0.0}]


def test_csv_rows() -> None:
    rows = list(csv.DictReader(io.StringIO(shots_csv(video(), SHOTS).decode())))
    assert [r["shot"] for r in rows] == ["1", "2"]
    assert rows[1]["start_frame"] == "40" and rows[1]["end_frame"] == "96" and rows[1]["start_timecode"] == "00:00:01:16"
    assert rows[1]["transition_in"] == "fade" and rows[0]["keyframes"] == "20"


def test_edl_is_cmx3600() -> None:
    lines = edl(video(), SHOTS).decode().splitlines()
    assert lines[:2] == ["TITLE: trailer.final", "FCM: NON-DROP FRAME"]
    events = [ln for ln in lines if ln[:3].isdigit()]
    assert events == [
        "001  AX       V     C        00:00:00:00 00:00:01:16 00:00:00:00 00:00:01:16",
        "002  AX       V     C        00:00:01:16 00:00:04:00 00:00:01:16 00:00:04:00",
    ]
    assert "* FROM CLIP NAME: trailer.final.mp4" in lines
    assert edl(video(Fraction(30000, 1001)), SHOTS).decode().splitlines()[1] == "FCM: DROP FRAME"
