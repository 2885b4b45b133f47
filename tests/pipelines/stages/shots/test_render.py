"""Acceptance 3: per-shot clips hold the shot's frames (±1), play in decord and PyAV, keep the audio."""

from __future__ import annotations

import io
from pathlib import Path

import av
import decord
import numpy as np
import pytest
from PIL import Image

from farm.runner.objects import FolderObjects
from pipelines.stages.backend import run_local
from pipelines.stages.media.synthetic import SyntheticVideo
from pipelines.stages.payloads import Failed, RenderedShot, ShotTask, Source
from pipelines.stages.shots.detect import DetectorConfig
from pipelines.stages.shots.find_shots import Detected, find_shots
from pipelines.stages.shots.render import RenderShot
from tests.pipelines.conftest import EDGE_CHUNK, rotated_copy


def detect(path: Path) -> Detected:
    detected, failed = find_shots([Source(0, path.name, path=str(path))], DetectorConfig(), chunk_size=EDGE_CHUNK, run=run_local)
    assert not failed
    return detected[0]


def render(d: Detected, out: Path, *, clip: bool = True, keyframes: bool = True) -> list[RenderedShot]:
    tasks = [ShotTask(d.probed.video, s, d.probed.pts_range(s.start, s.end), keyframes, clip) for s in d.shots]
    results = list(run_local(RenderShot(FolderObjects(out), preset="ultrafast"), tasks))
    assert not [r for r in results if isinstance(r, Failed)], results
    return results


def frames_pyav(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def audio_seconds(path: Path) -> float | None:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        return sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate


@pytest.fixture(scope="module")
def edge_clips(edge_video: SyntheticVideo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Detected, list[RenderedShot]]:
    d = detect(edge_video.path)
    return d, render(d, tmp_path_factory.mktemp("clips"))


def test_clips_have_the_shots_frames_and_play(edge_clips: tuple[Detected, list[RenderedShot]]) -> None:
    d, results = edge_clips
    assert [r.task.shot.frames for r in results] == [32, 31, 34, 6, 25, 32, 36, 36, 24, 24]
    for r in results:
        assert r.clip is not None and r.clip.path and r.clip.name == f"edges.shot-{r.task.shot.index:03d}.mp4"
        path = Path(r.clip.path)
        assert abs(frames_pyav(path) - r.task.shot.frames) <= 1
        assert abs(len(decord.VideoReader(str(path))) - r.task.shot.frames) <= 1


def test_clips_keep_the_audio_for_the_shots_span(edge_clips: tuple[Detected, list[RenderedShot]]) -> None:
    _, results = edge_clips
    for r in results:
        assert r.clip_has_audio and r.clip is not None and r.clip.path
        seconds = audio_seconds(Path(r.clip.path))
        assert seconds == pytest.approx(r.task.shot.frames / 24, abs=0.03)


def test_clip_content_is_the_shot(edge_clips: tuple[Detected, list[RenderedShot]], edge_video: SyntheticVideo) -> None:
    """The first frame of each clip is the source's frame at the shot's start, not a neighbour."""
    _, results = edge_clips
    source = decord.VideoReader(str(edge_video.path))
    for r in results[:6]:
        assert r.clip is not None and r.clip.path
        first = decord.VideoReader(str(r.clip.path))[0].asnumpy().astype(int)
        here = np.abs(first - source[r.task.shot.start].asnumpy()).mean()
        before = np.abs(first - source[max(0, r.task.shot.start - 1)].asnumpy()).mean()
        assert here < 6 and (r.task.shot.start == 0 or before > 3 * here + 10)


def test_keyframes_are_middle_frames_as_jpeg(edge_clips: tuple[Detected, list[RenderedShot]], edge_video: SyntheticVideo) -> None:
    _, results = edge_clips
    source = decord.VideoReader(str(edge_video.path))
    for r in results:
        (image,) = r.keyframes
        assert image.name == f"edges.shot-{r.task.shot.index:03d}.jpg" and image.content_type == "image/jpeg"
        assert image.path
        pixels = np.asarray(Image.open(image.path).convert("RGB")).astype(int)
        middle = r.task.shot.start + r.task.shot.frames // 2
        assert np.abs(pixels - source[middle].asnumpy()).mean() < 6
        assert r.thumbnail and Image.open(io.BytesIO(r.thumbnail)).width == 320


def test_real_footage_with_aac_audio(bunny: Path, tmp_path: Path) -> None:
    d = detect(bunny)
    (r,) = render(d, tmp_path)
    assert r.clip is not None and r.clip.path and r.clip_frames == 132
    assert frames_pyav(Path(r.clip.path)) == 132 and len(decord.VideoReader(r.clip.path)) == 132
    assert audio_seconds(Path(r.clip.path)) == pytest.approx(132 / 25, abs=0.03)


def test_real_footage_without_audio(bikes: Path, tmp_path: Path) -> None:
    d = detect(bikes)
    results = render(d, tmp_path, keyframes=False)
    assert [r.clip_frames for r in results] == [30, 46, 61, 50, 55, 8]
    assert all(not r.clip_has_audio and not r.keyframes and r.thumbnail for r in results)
    assert all(r.clip and r.clip.path and audio_seconds(Path(r.clip.path)) is None for r in results)


def test_keyframes_only_stops_early(bikes: Path, tmp_path: Path) -> None:
    d = detect(bikes)
    results = render(d, tmp_path, clip=False)
    assert all(r.clip is None and len(r.keyframes) == 1 for r in results)
    assert all(r.clip_frames <= r.task.shot.frames // 2 + 1 for r in results)  # decoding stopped at the keyframe


def test_rotated_source_keeps_its_rotation(edge_video: SyntheticVideo, tmp_path: Path) -> None:
    rotated = rotated_copy(edge_video.path, tmp_path / "rotated.mp4")
    d = detect(rotated)
    r = render(d, tmp_path / "out")[0]
    assert r.clip is not None and r.clip.path and r.keyframes[0].path
    with av.open(r.clip.path) as c:
        assert next(c.decode(video=0)).rotation == 90
    assert Image.open(r.keyframes[0].path).size == (108, 192)  # upright: portrait
