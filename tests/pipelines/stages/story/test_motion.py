"""The slow pan/zoom stays inside the keyframe and moves; crossfades keep the animatic's frame count."""

from __future__ import annotations

from pipelines.stages.story.motion import schedule, view_box
from pipelines.stages.story.shotlist import CAMERAS


def test_every_camera_moves_within_the_frame() -> None:
    for camera in CAMERAS:
        boxes = [view_box(camera, p, 96, 64, 0.12) for p in (0.0, 0.5, 1.0)]
        for left, top, right, bottom in boxes:
            assert -1e-9 <= left < right <= 96 + 1e-9 and -1e-9 <= top < bottom <= 64 + 1e-9
            assert abs((right - left) / (bottom - top) - 96 / 64) < 1e-9, "the aspect is kept"
        assert boxes[0] != boxes[-1], f"{camera} does not move"
    left0, *_ = view_box("pan right", 0.0, 96, 64, 0.12)
    left1, *_ = view_box("pan right", 1.0, 96, 64, 0.12)
    assert left1 > left0
    assert view_box("push in", 1.0, 96, 64, 0.12)[2] - view_box("push in", 1.0, 96, 64, 0.12)[0] < 96


def test_cuts_and_crossfades_cover_every_frame_once() -> None:
    bounds = [(0, 10), (10, 14), (14, 30)]
    cut = schedule(bounds, 0)
    assert [b.frame for b in cut] == list(range(30)) and all(b.other is None for b in cut)
    assert [b.shot for b in cut] == [0] * 10 + [1] * 4 + [2] * 16
    faded = schedule(bounds, 6)
    assert [b.frame for b in faded] == list(range(30))
    mixed = [b for b in faded if b.other is not None]
    assert {b.frame for b in mixed} == set(range(8, 16))  # 4 frames around each cut: the 4-frame shot bounds both
    # the later shot's share rises across the cut
    before_cut = [b.weight for b in faded[8:10]]
    assert before_cut == sorted(before_cut) and faded[9].other == 1 and faded[10].shot == 1 and faded[10].other == 0
