"""Frames sampled per shot: spread over each shot, upright, decoded once per video, with the shot's prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.stages.backend import run_local
from pipelines.stages.caption.sample import CaptionShots, CaptionTask, SampleShotFrames, sample_frames
from pipelines.stages.media.probe import probe
from pipelines.stages.media.synthetic import make_video
from pipelines.stages.payloads import Failed, Shot, Source
from tests.pipelines.conftest import rotated_copy


def test_frames_per_shot_are_spread_and_upright(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", (12, 20), size=(96, 64), fps=24, seed=2)
    rotated = rotated_copy(video.path, tmp_path / "r.mp4", 90)
    shots = (Shot(1, 0, 12, 0.0, 0.5, (6,)), Shot(2, 12, 32, 0.5, 32 / 24, (22,)))
    assert sample_frames(shots[1], 3) == (15, 22, 28) and sample_frames(Shot(3, 5, 6, 0, 0, ()), 4) == (5,)
    work = [CaptionShots(probe(p, Source(i, p.name, path=str(p))).video, shots, 2, 80, "Shot {shot} of {shots}, {start}s-{end}s", 8)
            for i, p in enumerate((video.path, rotated))]
    out = list(run_local(SampleShotFrames(None), work))
    assert all(isinstance(o, CaptionTask) for o in out) and len(out) == 4
    plain, turned = out[:2], out[2:]
    assert [t.frames for t in plain] == [(3, 9), (17, 27)]
    assert plain[0].images.shape == (2, 80, 120, 3) and turned[0].images.shape == (2, 120, 80, 3)  # stored landscape, tagged 90°: upright portrait
    assert plain[1].prompt == "Shot 2 of 2, 0.5s-1.333s"
    assert plain[0].messages()[0]["content"] == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": plain[0].prompt}]
    (missing,) = run_local(SampleShotFrames(None), [CaptionShots(work[0].video.__class__(**{**work[0].video.__dict__,
                                                   "source": Source(9, "gone.mp4", path=str(tmp_path / "gone.mp4"))}), shots, 1, 80, "x", 8)])
    assert isinstance(missing, Failed) and "file not found" in missing.message
