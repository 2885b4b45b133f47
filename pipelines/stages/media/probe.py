"""Probe: what a video is (frames, rate, size, codec, audio, rotation) and where its keyframes are.

Reads the container's packets without decoding them (cheap, and exact where
header frame counts lie), then decodes one frame to prove the stream is
decodable. Anything unusable raises `MediaError` with a message that says
what is wrong with the file, not which library choked.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from farm.runner.objects import ObjectHandle
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.payloads import Probed, Source, Video


class Probe(Stage[Source, Probed]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle | None = None) -> None:
        self.objects = objects

    def process(self, item: Source) -> list[Probed]:
        return [probe(media_path(item, self.objects), item)]


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.EOFError:
        raise MediaError("no video frames: the file ends before the first one (empty or zero-frame video)") from None
    except av.error.FFmpegError as exc:
        with path.open("rb") as fh:
            head = fh.read(12)
        if head[4:8] == b"ftyp":
            raise MediaError(f"corrupt or truncated MP4/MOV: its index cannot be read ({_reason(exc)})") from None
        raise MediaError(f"not a readable video file: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0]  # drop the temp path FFmpeg appends


def probe(path: Path | str, source: Source) -> Probed:
    path = Path(path)
    with _open(path) as container:
        if not container.streams:
            raise MediaError("no video frames: the file holds no streams (empty or zero-frame video)")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise MediaError(f"not a video: the file holds only {' and '.join(kinds)}")
        stream = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        pts, keys = _demux(container, stream)
        first = _first_frame(container, stream)
        width, height = stream.codec_context.width or first.width, stream.codec_context.height or first.height
        codec, tb, declared = stream.codec_context.name, stream.time_base, stream.frames
        rate = stream.average_rate or stream.guessed_rate
        audio_codec = audio.codec_context.name if audio is not None else None
    if declared and len(pts) < declared:
        raise MediaError(f"truncated: the file holds {len(pts)} of its {declared} frames")
    if tb is None:
        raise MediaError("the video stream has no time base")
    frame_pts = np.sort(np.asarray(pts, dtype=np.int64))
    deltas = np.diff(frame_pts)
    typical = float(np.median(deltas)) if len(deltas) else 0.0
    if not rate or rate <= 0:
        rate = Fraction(1, 1) / (Fraction(typical) * tb) if typical > 0 else Fraction(25)
    variable = bool(len(deltas) and np.any(np.abs(deltas - typical) > max(0.05 * typical, 1.0)))
    last = Fraction(typical) * tb if typical > 0 else 1 / Fraction(rate)
    duration = float((frame_pts[-1] - frame_pts[0]) * tb + last)
    keyframes = np.searchsorted(frame_pts, np.asarray(sorted(keys), dtype=np.int64)).astype(np.int64)
    video = Video(
        source=source, frames=len(frame_pts), fps=float(rate), rate=Fraction(rate), variable_fps=variable,
        width=int(width), height=int(height), duration=duration, codec=codec, pix_fmt=first.format.name,
        rotation=int(getattr(first, "rotation", 0) or 0), has_audio=audio is not None, audio_codec=audio_codec,
        time_base=Fraction(tb),
    )
    return Probed(video, frame_pts, np.unique(keyframes) if len(keyframes) else np.zeros(1, np.int64))


def _demux(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[list[int], list[int]]:
    """Every frame's timestamp, and the timestamps of keyframes, from packets alone."""
    pts: list[int] = []
    keys: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                raise MediaError("the video stream has no timestamps (a raw elementary stream?)")
            pts.append(t)
            if packet.is_keyframe:
                keys.append(t)
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt or truncated: reading stopped after {len(pts)} frames ({_reason(exc)})") from None
    if not pts:
        raise MediaError("the video stream has no frames")
    return pts, keys


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> av.VideoFrame:
    try:
        container.seek(0, stream=stream)
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt: the first frame does not decode ({_reason(exc)})") from None
    raise MediaError("corrupt: no frame of the video stream decodes")
