"""Decode, encode and join chunks: frames come back where they were, timestamps and audio unchanged."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.stages.base import MediaError
from pipelines.stages.media.frames import JoinReport, decode_frames, encode_chunk, frame_checksum, join_chunks, working_size
from pipelines.stages.media.probe import probe
from pipelines.stages.media.synthetic import SyntheticVideo, make_video
from pipelines.stages.payloads import Probed, Source
from tests.pipelines.conftest import audio_samples, vfr_copy

SIZE = (192, 108)
BOUNDS = (0, 29, 30, 72)  # three chunks, the middle one a single frame, edges off the shot cuts


def probed(path: Path) -> Probed:
    return probe(path, Source(0, path.name, path=str(path)))


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> SyntheticVideo:
    """3 s at 24 fps with audio, cuts at 20, 21 and 51, B-frames, a keyframe every 12 frames at most."""
    return make_video(tmp_path_factory.mktemp("frames") / "talk.mp4", [20, 1, 30, 21], size=SIZE, audio=True, seed=3, gop=12)


@pytest.fixture(scope="module")
def vfr(talk: SyntheticVideo) -> Path:
    """``talk``'s pictures, no audio, frames lasting 1/60 s to 1/10 s."""
    deltas = np.random.default_rng(5).choice([1500, 2000, 3750, 6000, 9000], size=talk.frames)
    return vfr_copy(talk.path, talk.path.with_name("vfr.mp4"), deltas)


def pyav_frames(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every frame in presentation order, decoded by PyAV (and scaled by swscale to ``size``)."""
    with av.open(str(path)) as c:
        frames = sorted(c.decode(video=0), key=lambda f: f.pts)
        width, height = size or (frames[0].width, frames[0].height)
        return np.stack([f.reformat(width=width, height=height, format="rgb24").to_ndarray() for f in frames])


def restyle(source: Path, bounds: tuple[int, ...], out: Path, *, audio: bool = True) -> tuple[Probed, list[Path], JoinReport]:
    """What a `video.restyle` job does, minus the model: decode small, encode back at source size, join."""
    p = probed(source)
    v = p.video
    small = working_size(v.width, v.height, 64)
    chunks = []
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        frames = decode_frames(source, list(range(a, b)), small)
        assert frames.shape == (b - a, small[1], small[0], 3) and frames.dtype == np.uint8
        chunks.append(encode_chunk(frames, p.pts_range(a, b), v.time_base, v.rate, out.with_name(f"{out.stem}-{k}.mp4"),
                                   size=(v.width, v.height)))
    return p, chunks, join_chunks(chunks, out, audio_from=source if audio else None)


def nal_types(packet: av.Packet) -> list[int]:
    """The H.264 NAL unit types in an MP4 packet (4-byte length prefixes): 5 is an IDR slice."""
    data, types, i = bytes(packet), [], 0
    while i + 4 < len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        types.append(data[i + 4] & 0x1F)
        i += 4 + size
    return types


def seconds(p: Probed) -> list[Fraction]:
    return [Fraction(int(t)) * p.video.time_base for t in p.frame_pts]


def audio_packets(path: Path) -> list[tuple[int | None, int | None, bytes]]:
    with av.open(str(path)) as c:
        return [(pk.pts, pk.dts, bytes(pk)) for pk in c.demux(c.streams.audio[0]) if pk.size]


@pytest.mark.parametrize(("width", "height", "short", "expected"), [
    (1920, 1080, 512, (912, 512)),  # 910.2 → 912
    (1080, 1920, 512, (512, 912)),  # portrait as stored
    (1280, 720, 720, (1280, 720)),  # already multiples of 8: unchanged
    (641, 359, 256, (456, 256)),  # odd sizes: 457.04 → 456
    (333, 333, 100, (104, 104)),  # 100 rounds up to the nearest multiple of 8
    (4000, 100, 4, (160, 8)),  # never below 8
])
def test_working_size(width: int, height: int, short: int, expected: tuple[int, int]) -> None:
    assert working_size(width, height, short) == expected
    assert all(s % 8 == 0 for s in expected)


@pytest.mark.parametrize("which", ["talk", "vfr"])
def test_decode_frames_are_the_requested_ones(which: str, talk: SyntheticVideo, vfr: Path) -> None:
    """Decord numbers frames as the probe does, B-frames and variable frame rate included: pixel-exact at native size."""
    path = talk.path if which == "talk" else vfr
    p = probed(path)
    assert p.video.variable_fps == (which == "vfr")
    wanted = [71, 3, 0, 20, 21, 50, 70]  # out of order, across cuts and keyframes, up to the last frame
    native = pyav_frames(path)
    assert len(native) == p.video.frames == 72
    got = decode_frames(path, wanted, SIZE)
    assert [frame_checksum(f) for f in got] == [frame_checksum(native[i]) for i in wanted]
    small = decode_frames(path, wanted, (96, 56))
    assert small.shape == (len(wanted), 56, 96, 3)
    assert np.abs(small.astype(np.int16) - pyav_frames(path, (96, 56))[wanted]).mean() < 2  # scalers differ, pictures do not
    assert decode_frames(path, [], (96, 56)).shape == (0, 56, 96, 3)


@pytest.mark.parametrize("size", [(8, 8), (16, 24), (24, 16), (48, 32), (72, 40)])
def test_narrow_frames_decode_too(size: tuple[int, int], talk: SyntheticVideo) -> None:
    """Widths decord cannot scale to by itself (a short side of 72 on a portrait video gives one) still decode, right."""
    got = decode_frames(talk.path, [0, 40], size)
    assert got.shape == (2, size[1], size[0], 3)
    assert np.abs(got.astype(np.int16) - pyav_frames(talk.path, size)[[0, 40]]).mean() < 6  # box average against swscale


def test_round_trip_keeps_frames_timestamps_keyframes_and_audio(talk: SyntheticVideo, tmp_path: Path) -> None:
    source, chunks, report = restyle(talk.path, BOUNDS, tmp_path / "out.mp4")
    out = probed(tmp_path / "out.mp4")
    assert report.frames == out.video.frames == source.video.frames == 72
    assert report.keyframes == BOUNDS[:-1] and set(BOUNDS[:-1]) <= set(out.keyframes.tolist())
    assert seconds(out) == seconds(source)  # exact, in the source's clock
    assert report.has_audio and out.video.has_audio
    assert abs(out.video.duration - source.video.duration) <= 1 / 24 and report.duration == pytest.approx(3.0)
    assert (out.video.width, out.video.height) == SIZE
    with av.open(str(tmp_path / "out.mp4")) as c:
        packets = [pk for pk in c.demux(video=0) if pk.size]
        assert all(pk.pts == pk.dts for pk in packets)  # no B-frames: chunks join with rising dts
        assert all(5 in nal_types(packets[k]) for k in BOUNDS[:-1])  # every chunk opens with an IDR frame
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(talk.path)
    assert np.array_equal(audio_samples(tmp_path / "out.mp4"), audio_samples(talk.path))
    # The pictures survive a trip through 64 px high, give or take the blur.
    assert np.abs(pyav_frames(tmp_path / "out.mp4").astype(np.int16) - pyav_frames(talk.path)).mean() < 12


def test_variable_frame_rate_keeps_its_timestamps_and_no_audio_stays_none(vfr: Path, tmp_path: Path) -> None:
    source, _, report = restyle(vfr, (0, 13, 14, 72), tmp_path / "vfr-out.mp4")
    out = probed(tmp_path / "vfr-out.mp4")
    assert out.video.variable_fps and seconds(out) == seconds(source)
    assert report.duration == pytest.approx(source.video.duration) and out.video.duration == pytest.approx(source.video.duration)
    assert not source.video.has_audio and not report.has_audio and not out.video.has_audio
    with av.open(str(tmp_path / "vfr-out.mp4")) as c:
        assert not c.streams.audio


def test_chunk_starting_late_keeps_exact_timestamps(vfr: Path, tmp_path: Path) -> None:
    """A chunk on its own: frames at their source pts (an MP4 edit list in the source's clock, not milliseconds)."""
    p = probed(vfr)
    pts = p.pts_range(13, 20)
    chunk = encode_chunk(decode_frames(vfr, range(13, 20), SIZE), pts, p.video.time_base, p.video.rate, tmp_path / "c.mp4")
    q = probed(chunk)
    assert seconds(q) == [Fraction(int(t)) * p.video.time_base for t in pts[:-1]]
    with av.open(str(chunk)) as c:  # the last frame lasts until the next one would start: the chunk's span is exact
        stream = c.streams.video[0]
        assert stream.duration * stream.time_base == (pts[-1] - pts[0]) * p.video.time_base
    assert list(q.keyframes) == [0]


def test_display_rotation_is_kept(talk: SyntheticVideo, tmp_path: Path) -> None:
    p = probed(talk.path)
    chunk = encode_chunk(decode_frames(talk.path, range(4), SIZE), p.pts_range(0, 4), p.video.time_base, p.video.rate,
                         tmp_path / "r.mp4", rotation=90)
    join_chunks([chunk], tmp_path / "r-out.mp4", audio_from=None)
    assert probed(tmp_path / "r-out.mp4").video.rotation == 90


def test_join_refuses_chunks_that_do_not_fit(talk: SyntheticVideo, tmp_path: Path) -> None:
    p = probed(talk.path)
    v = p.video

    def chunk(a: int, b: int, name: str, size: tuple[int, int] = SIZE) -> Path:
        return encode_chunk(decode_frames(talk.path, range(a, b), SIZE), p.pts_range(a, b), v.time_base, v.rate, tmp_path / name, size=size)

    first, second, smaller = chunk(0, 5, "a.mp4"), chunk(5, 9, "b.mp4"), chunk(5, 9, "s.mp4", (96, 54))
    with pytest.raises(MediaError, match=r"chunk 2 \(s.mp4\) was encoded differently from chunk 1 \(width 192 vs 96, height 108 vs 54"):
        join_chunks([first, smaller], tmp_path / "x.mp4", audio_from=None)
    with pytest.raises(MediaError, match="out of order"):
        join_chunks([second, first], tmp_path / "x.mp4", audio_from=None)
    assert not (tmp_path / "x.mp4").exists() and not list(tmp_path.glob("*.part.mp4"))


def test_corrupt_inputs_raise_media_error(talk: SyntheticVideo, tmp_path: Path) -> None:
    data = talk.path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index sits at the end: an interrupted upload
    with pytest.raises(MediaError, match="corrupt or truncated"):
        decode_frames(cut, [0, 1, 2], (96, 56))
    with pytest.raises(MediaError, match="truncated: the decoder sees 72 frames, so frames 72, 80 are missing"):
        decode_frames(talk.path, [0, 72, 80], (96, 56))
    with pytest.raises(MediaError, match=r"corrupt or truncated: chunk 1 \(cut.mp4\) cannot be opened"):
        join_chunks([cut], tmp_path / "x.mp4", audio_from=None)
    p = probed(talk.path)
    good = encode_chunk(decode_frames(talk.path, range(3), SIZE), p.pts_range(0, 3), p.video.time_base, p.video.rate, tmp_path / "g.mp4")
    with pytest.raises(MediaError, match="the audio source"):
        join_chunks([good], tmp_path / "x.mp4", audio_from=cut)


def test_frame_checksum_is_stable_and_sees_shape() -> None:
    frame = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    digest = frame_checksum(frame)
    assert len(digest) == 16 and digest == frame_checksum(frame.copy())
    assert digest != frame_checksum(frame.reshape(4, 2, 3))
    assert digest != frame_checksum(frame[::-1])
    with pytest.raises(ValueError):
        frame_checksum(frame.astype(np.float32))
