"""Decode a frame range once: keep some frames as images, re-encode the range as a clip with its audio.

PyAV seeks to the keyframe before the range, decodes to its end, keeps
frames by timestamp (so the clip holds exactly the range's frames whatever
the GOP), grabs the wanted images on the way, and re-encodes H.264. Audio is
cut to the range's time span to the sample and re-encoded as AAC. Any video
kind that works on frame ranges (shots, restyled segments) cuts through this.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipelines.stages.base import MediaError
from pipelines.stages.payloads import Segment, Video

THUMB_WIDTH = 320


def jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH) -> Image.Image:
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.BILINEAR)


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """Apply the display rotation (degrees counterclockwise) the player would apply."""
    return image.rotate(rotation, expand=True) if rotation % 360 else image


@dataclass(frozen=True)
class Cut:
    images: list[Image.Image]  # the segment's wanted frames, upright
    frames: int  # frames decoded (and written, for a clip)
    audio: bool  # the clip carries the source's audio


def cut(path: Path, segment: Segment, clip: Path | None, *, crf: int = 20, preset: str = "veryfast") -> Cut:
    """Decode the segment once: its wanted images always, and the clip when ``clip`` is a path."""
    with av.open(str(path)) as src:
        if clip is None:
            images, frames = _decode(src, segment, None)
            return Cut(images, frames, audio=False)
        with av.open(str(clip), "w") as out:
            enc = _video_encoder(out, segment.video, src.streams.video[0].time_base, crf, preset)
            audio_in = src.streams.audio[0] if src.streams.audio else None
            audio_out = out.add_stream("aac", rate=audio_in.rate, layout=_layout(audio_in)) if audio_in is not None else None
            images, frames = _decode(src, segment, (out, enc))
            if frames != segment.frames:
                raise MediaError(f"{segment.label}: decoded {frames} of its {segment.frames} frames")
            if audio_in is not None and audio_out is not None:
                tb = src.streams.video[0].time_base
                _copy_audio(src, audio_in, out, audio_out, float(segment.pts[0] * tb), float(segment.pts[-1] * tb))
        return Cut(images, frames, audio=audio_in is not None)


def _decode(src: av.container.InputContainer, segment: Segment,
            sink: tuple[av.container.OutputContainer, av.video.stream.VideoStream] | None) -> tuple[list[Image.Image], int]:
    """Frames with pts in [first, stop): wanted ones kept as images, all re-encoded into ``sink``."""
    stream = src.streams.video[0]
    first, stop = int(segment.pts[0]), int(segment.pts[-1])
    wanted = {k: i for i, k in enumerate(segment.images)}
    images: list[Image.Image | None] = [None] * len(wanted)
    written = 0
    src.seek(first, stream=stream, backward=True)
    try:
        for frame in src.decode(stream):
            if frame.pts is None or frame.pts < first:
                continue
            if frame.pts >= stop:
                break
            index = segment.start + int(np.searchsorted(segment.pts[:-1], frame.pts))
            if index in wanted:
                images[wanted[index]] = upright(frame.to_image(), segment.video.rotation)
            written += 1
            if sink is None:
                if all(i is not None for i in images):
                    break
                continue
            out, enc = sink
            frame.pts, frame.pict_type = frame.pts - first, av.video.frame.PictureType.NONE
            out.mux(enc.encode(frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")))
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt: {segment.label} stops decoding after {written} frames ({exc})") from None
    if sink is not None:
        sink[0].mux(sink[1].encode())
    return [i for i in images if i is not None], written


def _video_encoder(out: av.container.OutputContainer, video: Video, time_base: Fraction, crf: int, preset: str) -> av.video.stream.VideoStream:
    enc = out.add_stream("libx264", rate=video.rate)
    enc.width, enc.height, enc.pix_fmt = video.width - video.width % 2, video.height - video.height % 2, "yuv420p"
    enc.time_base = enc.codec_context.time_base = time_base  # the source's clock (the encoder's too): VFR timestamps copy over exactly
    enc.options = {"preset": preset, "crf": str(crf)}
    enc.codec_context.thread_count = 1  # one CPU per task; segments run in parallel
    if video.rotation % 360:
        enc.set_display_rotation(video.rotation)
    return enc


def _layout(stream: av.audio.stream.AudioStream) -> str:
    channels = stream.codec_context.channels or 2
    return stream.layout.name if channels <= 2 and stream.layout.name else "stereo"


def _copy_audio(src: av.container.InputContainer, stream: av.audio.stream.AudioStream, out: av.container.OutputContainer,
                enc: av.audio.stream.AudioStream, start: float, end: float) -> None:
    """Samples in [start, end) seconds, resampled to the encoder's planar format, from pts 0."""
    rate, layout = enc.rate, enc.layout.name
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    src.seek(max(0, int(start / stream.time_base)), stream=stream, backward=True)
    written = 0
    done = False
    for frame in src.decode(stream):
        if frame.pts is None:
            continue
        for part in resampler.resample(frame):
            t0 = float(part.pts * part.time_base) if part.pts is not None else start + written / rate
            samples = part.to_ndarray()
            lo = max(0, round((start - t0) * rate))
            hi = min(samples.shape[1], round((end - t0) * rate))
            if t0 >= end:
                done = True
                break
            if hi > lo:
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, lo:hi]), format="fltp", layout=layout)
                piece.sample_rate, piece.pts, piece.time_base = rate, written, Fraction(1, rate)
                out.mux(enc.encode(piece))
                written += hi - lo
        if done:
            break
    out.mux(enc.encode())
