"""Assembling one animatic in-process: frame-exact length, subtitles read back by FFmpeg, burn-in, crossfades, shots.json."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from farm.runner.objects import FolderObjects
from pipelines.stages.backend import run_local
from pipelines.stages.payloads import Failed, Source
from pipelines.stages.story.assemble import Animatic, AnimaticTask, AssembleAnimatic
from pipelines.stages.story.shotlist import Bounds, draft_model, timed

FPS = 6
SHOTS = [("a hill", "Once {upon} a time", "pan left", 2), ("a kite", "", "push in", 1), ("the sea", "the end", "static", 3)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> FolderObjects:
    objects = FolderObjects(tmp_path_factory.mktemp("story"))
    for n in range(len(SHOTS)):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(n).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buf, "PNG")
        objects.put(f"k{n}.png", buf.getvalue())
    return objects


def task(stem: str, subtitles: tuple[str, ...] = ("srt", "soft"), crossfade_s: float = 0.0) -> AnimaticTask:
    b = Bounds(2, 4, 40, 1, 6)
    draft = draft_model(b).model_validate({"shots": [
        {"visual": v, "narration": n or " ", "camera": c, "duration_s": d} for v, n, c, d in SHOTS]})
    shotlist = timed(draft, "A Story", b, fps=FPS, words_per_minute=150)
    return AnimaticTask(Source(0, stem), shotlist, tuple(f"k{n}.png" for n in range(len(SHOTS))), 96, 64, subtitles, crossfade_s)


def assemble(folder: FolderObjects, t: AnimaticTask) -> Animatic:
    (out,) = run_local(AssembleAnimatic(folder), [t])
    assert isinstance(out, Animatic), out
    return out


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def subtitle_track(path: Path) -> list[tuple[float, float]]:
    """(start, end) seconds of the MP4's non-empty mov_text samples."""
    with av.open(str(path)) as c:
        (s,) = c.streams.subtitles
        return [(float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base)) for p in c.demux(s) if p.pts is not None and p.size > 2]


def test_the_animatic_lasts_its_shots_and_carries_their_narration(folder: FolderObjects) -> None:
    out = assemble(folder, task("plain"))
    mp4 = Path(out.video.path or "")
    assert out.frames == 6 * FPS and out.duration == pytest.approx(6.0, abs=1 / FPS)
    frames = frames_of(mp4)
    assert len(frames) == 36
    assert not np.array_equal(frames[0], frames[11]), "the keyframe moves while held"
    assert subtitle_track(mp4) == [(0.0, 2.0), (3.0, 6.0)], "one cue per narrated shot, on its frames"
    with av.open(str(out.srt.path)) as c:  # type: ignore[union-attr]
        stream = c.streams.subtitles[0]
        cues = [(float(p.pts * stream.time_base), bytes(p).decode().strip()) for p in c.demux(stream) if p.size]
    assert cues == [(0.0, "Once (upon) a time"), (3.0, "the end")]
    doc = json.loads(Path(out.shots.path or "").read_text())
    assert [(s["start_frame"], s["end_frame"], s["transition_in"]) for s in doc["shots"]] == [(0, 12, None), (12, 18, "cut"), (18, 36, "cut")]
    assert doc["frames"] == 36 and doc["rate"] == f"{FPS}/1" and doc["video"]["name"] == "plain.animatic.mp4"
    board = Image.open(out.storyboard.path or "")
    assert board.format == "JPEG" and board.width > 3 * 96


def test_crossfades_keep_the_length_and_burn_in_draws_the_words(folder: FolderObjects) -> None:
    plain = frames_of(Path(assemble(folder, task("plain2")).video.path or ""))
    faded = assemble(folder, task("faded", ("burn",), crossfade_s=1.0))
    assert faded.srt is None and faded.frames == 36, "no sidecar, no soft track asked for; same length"
    frames = frames_of(Path(faded.video.path or ""))
    with av.open(faded.video.path or "") as c:
        assert not c.streams.subtitles
    assert len(frames) == len(plain) == 36
    # mid-shot frames outside the fades: the burned-in caption sits in the lower part only
    lower, upper = slice(40, 64), slice(0, 20)
    diff = np.abs(frames[4].astype(int) - plain[4].astype(int))
    assert diff[lower].mean() > 4 * max(diff[upper].mean(), 0.5), (diff[lower].mean(), diff[upper].mean())
    doc = json.loads(Path(faded.shots.path or "").read_text())
    assert [t["kind"] for t in doc["transitions"]] == ["fade", "fade"]


def test_a_missing_keyframe_fails_the_story(folder: FolderObjects) -> None:
    broken = task("broken")
    broken = AnimaticTask(broken.source, broken.shotlist, ("k0.png", "nope.png", "k2.png"), 96, 64)
    (out,) = run_local(AssembleAnimatic(folder), [broken])
    assert isinstance(out, Failed) and "keyframe of shot 2 cannot be read" in out.message


def test_timestamps_are_the_frame_clock(folder: FolderObjects) -> None:
    with av.open(assemble(folder, task("clock")).video.path or "") as c:
        v = c.streams.video[0]
        pts = [f.pts * v.time_base for f in c.decode(v)]
    assert pts == [Fraction(n, FPS) for n in range(36)]
