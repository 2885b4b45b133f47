"""Frames in, frames out: decode chunks for a model, encode its output, join the chunks into one video.

`video.restyle` re-renders every frame, so it cannot cut packets like a
shot clip can: a worker decodes a chunk's frames at a working resolution
(`decode_frames`), the model redraws them, and the worker encodes them as a
small H.264 file of its own (`encode_chunk`). The files are joined by
remuxing (`join_chunks`), never re-encoded, so two rules make that work:
every chunk is encoded in the source's clock (frame i keeps the source's
pts, variable frame rates included) and with no B-frames (dts == pts, so the
joined stream's dts rise monotonically across chunk edges); and every chunk
opens with an IDR frame, so each one decodes on its own. The source's audio
is copied packet for packet, so the sound is the source's, bit for bit.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipelines.stages.base import MediaError

MULTIPLE = 8  # diffusion models work on latents 8x smaller than the image


def working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side``, aspect kept, both rounded to a multiple of 8.

    The size is of the frame as stored: a portrait phone video stored
    landscape with a rotation tag stays landscape here; callers rotate.
    """
    if width <= 0 or height <= 0 or short_side <= 0:
        raise ValueError(f"sizes must be positive: {width}x{height}, short side {short_side}")
    scale = short_side / min(width, height)
    return _round8(width * scale), _round8(height * scale)


def _round8(x: float) -> int:
    return max(MULTIPLE, int(x / MULTIPLE + 0.5) * MULTIPLE)


#: Decord cannot scale to some widths under 80 (8, 16, 24, 48 and 72 fail inside its buffer copy); narrower frames are
#: decoded at a multiple of their size that reaches it and box-averaged down.
DECORD_MIN_WIDTH = 80


def decode_frames(path: Path, frames: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """Frames ``frames`` (numbered as in the probe's ``frame_pts``) as uint8 RGB, (N, H, W, 3) at ``size`` (W, H).

    Decord scales inside FFmpeg while converting, so full-size RGB is never
    made. Its frame numbers are the probe's: it indexes frames by sorted
    pts, which was checked against PyAV on B-frame and variable-frame-rate
    sources (exact pixels at native size), so no PyAV fallback is needed.
    """
    import decord

    width, height = size
    wanted = [int(f) for f in frames]
    if not wanted:
        return np.zeros((0, height, width, 3), np.uint8)
    where = _span(wanted)
    k = -(-DECORD_MIN_WIDTH // width) if width < DECORD_MIN_WIDTH else 1  # decode k times larger, then average k x k
    try:  # decord raises RuntimeError, not DECORDError, when FFmpeg cannot open the file
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width * k, height=height * k, num_threads=1)
    except (decord.DECORDError, RuntimeError) as exc:
        raise MediaError(f"corrupt or truncated: the decoder cannot read the video for {where} ({_reason(exc, path)})") from None
    missing = [f for f in wanted if not 0 <= f < len(vr)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MediaError(f"truncated: the decoder sees {len(vr)} frames, so {_span(missing)} {verb} missing")
    try:
        batch = vr.get_batch(wanted).asnumpy()
    except (decord.DECORDError, RuntimeError) as exc:
        raise MediaError(f"corrupt: decoding {where} failed ({_reason(exc, path)})") from None
    if k > 1 and batch.shape == (len(wanted), height * k, width * k, 3):
        batch = batch.reshape(len(wanted), height, k, width, k, 3).mean(axis=(2, 4)).round().astype(np.uint8)
    if batch.shape != (len(wanted), height, width, 3):
        raise MediaError(f"corrupt: decoding {where} gave {batch.shape[0]} frames of {len(wanted)}")
    return np.ascontiguousarray(batch, dtype=np.uint8)


def _span(frames: Sequence[int]) -> str:
    """How error messages name a list of frames: ``frames 10-41`` or ``frames 3, 9, 12 (+4 more)``."""
    if len(frames) > 1 and list(frames) == list(range(frames[0], frames[0] + len(frames))):
        return f"frames {frames[0]}-{frames[-1]}"
    head = ", ".join(str(f) for f in frames[:6])
    return f"frame{'s' if len(frames) > 1 else ''} {head}" + (f" (+{len(frames) - 6} more)" if len(frames) > 6 else "")


def _reason(exc: BaseException, path: Path) -> str:
    """Decord's message without its own source location or the temp path, for a user to read."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = re.sub(r"^\[[\d:]+\] \S+\.cc:\d+: ", "", lines[0] if lines else type(exc).__name__)
    return text.replace(str(path), path.name)[:200]


def encode_chunk(
    frames: np.ndarray, pts: np.ndarray, time_base: Fraction, rate: Fraction, path: Path, *,
    size: tuple[int, int] | None = None, crf: int = 18, preset: str = "veryfast", rotation: int = 0,
) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames as one joinable H.264 MP4; frame i starts at ``pts[i]``.

    ``pts`` holds N+1 entries in ``time_base`` (the source's clock): the last
    is where the next frame starts, and gives the last frame its duration,
    so the chunk lasts exactly as long as the source's frames did. ``size``
    (W, H), usually the source's, scales the frames first (bicubic, in the
    same swscale pass that converts them to YUV). ``rotation`` tags the
    display rotation the source had. The file appears whole or not at all.
    """
    frames, stamps = np.asarray(frames), np.asarray(pts, dtype=np.int64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be a non-empty (N, H, W, 3) uint8 array, not {frames.shape} {frames.dtype}")
    if stamps.shape != (len(frames) + 1,) or np.any(np.diff(stamps) <= 0):
        raise ValueError(f"pts must rise strictly and hold {len(frames) + 1} entries (one per frame and the end), not {stamps.shape}")
    width, height = size if size is not None else (frames.shape[2], frames.shape[1])
    width, height = width - width % 2, height - height % 2  # yuv420p halves the chroma planes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part" + path.suffix)
    duration = {int(a): int(b - a) for a, b in zip(stamps[:-1], stamps[1:])}
    try:
        _encode(frames, stamps, time_base, rate, tmp, (width, height), duration, crf, preset, rotation)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def _encode(frames: np.ndarray, stamps: np.ndarray, time_base: Fraction, rate: Fraction, tmp: Path, size: tuple[int, int],
            duration: dict[int, int], crf: int, preset: str, rotation: int) -> None:
    width, height = size
    with av.open(str(tmp), "w", options=_exact_clock(time_base)) as out:
        enc = out.add_stream("libx264", rate=rate)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        # The source's clock, for the stream and the encoder (else frames are rounded to 1/rate): VFR survives.
        enc.time_base = enc.codec_context.time_base = time_base
        # No B-frames: dts == pts, so joined chunks keep rising dts. Stitchable: headers do not depend on
        # the content, so chunks encoded alike share SPS/PPS and one chunk's can stand for all.
        enc.options = {"preset": preset, "crf": str(crf), "forced-idr": "1", "x264-params": "bframes=0:stitchable=1"}
        enc.codec_context.thread_count = 1  # one CPU per task; chunks run in parallel
        if rotation % 360:
            enc.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
            frame.pts, frame.time_base = int(stamps[i]), time_base
            frame.pict_type = av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.NONE
            _mux(out, enc.encode(frame), duration)
        _mux(out, enc.encode(), duration)


def _exact_clock(time_base: Fraction) -> dict[str, str]:
    """MP4 options that keep a stream's timestamps exact in ``time_base``.

    A chunk starts late (its first pts is not 0), which MP4 records as an
    empty edit in the movie's clock, by default milliseconds: 17/24 s would
    come back rounded. Giving the track and the movie the source's clock
    keeps every timestamp exact.
    """
    scale = str(Fraction(time_base).denominator)
    return {"video_track_timescale": scale, "movie_timescale": scale}


def _mux(out: av.container.OutputContainer, packets: list[av.Packet], duration: dict[int, int]) -> None:
    for packet in packets:
        if packet.pts is not None and packet.pts in duration:
            packet.duration = duration[packet.pts]  # the last frame's too, which the encoder cannot know
        out.mux(packet)


@dataclass(frozen=True)
class JoinReport:
    """What a join wrote: enough for the job to check the output against the source's probe."""

    frames: int  # video frames written
    keyframes: tuple[int, ...]  # frame numbers where each chunk starts (all IDR frames)
    has_audio: bool  # the source's audio was copied
    duration: float  # seconds, the video stream's first frame to the end of its last


def join_chunks(chunks: Sequence[Path], out: Path, *, audio_from: Path | None) -> JoinReport:
    """Remux the chunks' video, in order, into one MP4 with ``audio_from``'s first audio stream copied unchanged.

    Nothing is re-encoded: video packets keep their timestamps (the source's
    clock), so the chunks must come from `encode_chunk` with identical
    settings; chunks whose codec parameters differ are refused, and so are
    chunks that overlap or come out of order. Audio packets are copied as
    they are, so the decoded sound is the source's. Video and audio are
    interleaved by time as they are read, never held in memory. The file
    appears whole or not at all.
    """
    if not chunks:
        raise ValueError("nothing to join: no chunks")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part" + out.suffix)
    tally = _Tally()
    try:
        with ExitStack() as stack:
            first = stack.enter_context(_open(chunks[0], f"chunk 1 ({chunks[0].name})"))
            if not first.streams.video:
                raise MediaError(f"chunk 1 ({chunks[0].name}) holds no video stream")
            template = first.streams.video[0]
            source = stack.enter_context(_open(audio_from, f"the audio source ({audio_from.name})")) if audio_from is not None else None
            audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
            dst = stack.enter_context(av.open(str(tmp), "w", options=_exact_clock(template.time_base)))
            video = dst.add_stream_from_template(template)
            audio = dst.add_stream_from_template(audio_in) if audio_in is not None else None
            streams = [_chunk_packets(chunks, first, tally)]
            if source is not None and audio_in is not None:
                streams.append(_packets(source, audio_in, f"the audio source ({audio_from.name})", 1))
            for _, kind, packet in heapq.merge(*streams, key=lambda item: item[:2]):
                packet.stream = video if kind == 0 else audio
                try:
                    dst.mux(packet)
                except av.error.FFmpegError as exc:
                    what = f"the source's {audio_in.codec_context.name} audio" if kind and audio_in is not None else "the video"
                    raise MediaError(f"cannot write {what} into the joined MP4 ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    keyframes = tuple(int(k) for k in np.cumsum([0, *tally.counts[:-1]]))
    return JoinReport(sum(tally.counts), keyframes, audio_in is not None, float(tally.end - tally.start))


@dataclass
class _Tally:
    """What the join learns while it streams the chunks through."""

    counts: list[int] = field(default_factory=list)  # frames per chunk
    start: Fraction = Fraction(0)  # seconds: the first frame's pts
    end: Fraction = Fraction(0)  # and where the last frame ends


def _chunk_packets(chunks: Sequence[Path], first: av.container.InputContainer, tally: _Tally) -> Iterator[tuple[Fraction, int, av.Packet]]:
    """Every chunk's video packets in order, checked: same codec parameters, an IDR first, dts rising across edges."""
    reference = _params(first.streams.video[0])
    last: Fraction | None = None
    for n, path in enumerate(chunks, 1):
        label = f"chunk {n} ({path.name})"
        with nullcontext(first) if n == 1 else _open(path, label) as src:
            if not src.streams.video:
                raise MediaError(f"{label} holds no video stream")
            params = _params(src.streams.video[0])
            if params != reference:
                raise MediaError(f"{label} was encoded differently from chunk 1 ({_difference(reference, params)}); "
                                 "encode all chunks of a video with the same size and settings")
            count = 0
            for t, kind, packet in _packets(src, src.streams.video[0], label, 0):
                if count == 0 and not packet.is_keyframe:
                    raise MediaError(f"{label} does not start with a keyframe, so it cannot be joined")
                if last is not None and t <= last:
                    raise MediaError(f"{label} starts before chunk {n - 1} ends: chunks overlap or are out of order")
                if n == 1 and count == 0:
                    tally.start = Fraction(packet.pts) * packet.time_base
                last, count = t, count + 1
                tally.end = Fraction(packet.pts + packet.duration) * packet.time_base
                yield t, kind, packet
            if not count:
                raise MediaError(f"{label} holds no frames")
            tally.counts.append(count)


def _packets(src: av.container.InputContainer, stream: av.stream.Stream, label: str,
             kind: int) -> Iterator[tuple[Fraction, int, av.Packet]]:
    """A stream's packets with their dts in seconds (exact), for merging streams by time."""
    try:
        for packet in src.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            t = packet.dts if packet.dts is not None else packet.pts
            if t is None:
                raise MediaError(f"{label} has packets without timestamps")
            yield Fraction(t) * packet.time_base, kind, packet
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt or truncated: {label} stops reading ({exc.strerror or exc})") from None


def _open(path: Path, label: str) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt or truncated: {label} cannot be opened ({exc.strerror or exc})") from None


def _params(stream: av.video.stream.VideoStream) -> tuple[object, ...]:
    cc = stream.codec_context
    return cc.name, cc.width, cc.height, cc.format.name if cc.format else None, bytes(cc.extradata or b"")


def _difference(a: tuple[object, ...], b: tuple[object, ...]) -> str:
    names = ("codec", "width", "height", "pixel format", "codec headers (SPS/PPS)")
    return ", ".join(f"{name} {x!r} vs {y!r}" if name != names[-1] else name for name, x, y in zip(names, a, b) if x != y)


def frame_checksum(frame: np.ndarray) -> str:
    """A short digest of a frame's pixels and shape: equal frames, equal digests, on any machine."""
    if frame.dtype != np.uint8:
        raise ValueError(f"frames are uint8, not {frame.dtype}")
    data = np.ascontiguousarray(frame)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(data.shape).encode())
    digest.update(data.tobytes())
    return digest.hexdigest()
