"""Probe: exact metadata from real and generated videos; unusable inputs fail with a message that says why."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.stages.backend import run_local
from pipelines.stages.base import MediaError
from pipelines.stages.media.probe import Probe, probe
from pipelines.stages.media.synthetic import SyntheticVideo
from pipelines.stages.payloads import Failed, Probed, Source
from tests.pipelines.conftest import rotated_copy


def src(path: Path) -> Source:
    return Source(0, path.name, path=str(path))


def test_probe_real_footage(bikes: Path, bunny: Path) -> None:
    b = probe(bikes, src(bikes))
    v = b.video
    assert (v.frames, v.width, v.height, v.fps, v.codec) == (250, 640, 272, 25.0, "h264")
    assert not v.variable_fps and not v.has_audio and v.rotation == 0 and v.duration == pytest.approx(10.0)
    assert list(b.keyframes) == [0, 30, 76, 137, 187, 242]  # this encoder put an IDR on every cut
    bb = probe(bunny, src(bunny)).video
    assert (bb.frames, bb.width, bb.height, bb.has_audio, bb.audio_codec) == (132, 1280, 720, True, "aac")


def test_probe_generated_video_and_its_timeline(edge_video: SyntheticVideo) -> None:
    p = probe(edge_video.path, src(edge_video.path))
    assert p.video.frames == edge_video.frames == 280 and p.video.rate == Fraction(24) and p.video.has_audio
    times = p.times()
    assert len(times) == 281 and times[0] == 0 and times[-1] == pytest.approx(280 / 24)
    assert np.allclose(np.diff(times), 1 / 24)
    pts = p.pts_range(270, 280)
    assert len(pts) == 11 and pts[-1] > pts[-2]  # the last entry is where the video ends


def test_rotation_is_reported(tmp_path: Path, edge_video: SyntheticVideo) -> None:
    rotated = rotated_copy(edge_video.path, tmp_path / "rotated.mp4")
    assert probe(rotated, src(rotated)).video.rotation == 90


def make_zero_frame(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    return path


def make_faststart_truncated(path: Path, source: Path) -> Path:
    """Index first, then only part of the frames: a download cut short."""
    with av.open(str(source)) as src_c, av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(src_c.streams.video[0])
        for packet in src_c.demux(src_c.streams.video[0]):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 5])
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda d, v: (d / "notes.txt").write_bytes(b"not a video\n") and d / "notes.txt", "not a readable video file"),
    (lambda d, v: (d / "empty.mp4").write_bytes(b"") == 0 and d / "empty.mp4", "not a readable video file"),
    (lambda d, v: make_zero_frame(d / "zero.mp4"), "no video frames"),
    (lambda d, v: make_audio_only(d / "voice.m4a"), "not a video: the file holds only audio"),
    (lambda d, v: make_faststart_truncated(d / "cut-short.mp4", v), "truncated: the file holds"),
], ids=["text", "empty", "zero-frame", "audio-only", "truncated-faststart"])
def test_unusable_inputs_fail_with_a_clear_message(tmp_path: Path, edge_video: SyntheticVideo, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path, edge_video.path)
    with pytest.raises(MediaError, match=message):
        probe(path, src(path))


def test_truncated_index_and_a_good_file_through_the_stage(truncated_video: Path, bikes: Path) -> None:
    """The stage turns one bad input into a Failed payload; the other input goes on."""
    out = list(run_local(Probe(), [Source(0, "cut.mp4", path=str(truncated_video)), Source(1, "bikes.mp4", path=str(bikes))]))
    assert isinstance(out[0], Failed) and out[0].source.index == 0
    assert "corrupt or truncated MP4/MOV" in out[0].message
    assert isinstance(out[1], Probed) and out[1].video.frames == 250
