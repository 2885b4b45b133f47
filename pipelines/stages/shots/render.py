"""Per-shot outputs: keyframe images and a frame-accurate clip, from one decode of the shot.

PyAV seeks to the keyframe before the shot, decodes to its end, keeps frames
by timestamp (so the clip holds exactly the shot's frames whatever the GOP),
grabs the keyframe images on the way, and re-encodes H.264. Audio is cut to
the shot's time span to the sample and re-encoded as AAC.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from farm.settings import Settings
from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media import MediaAccess
from pipelines.stages.outputs import OutputWriter
from pipelines.stages.payloads import RenderedShot, ShotTask, StoredFile, Video

THUMB_WIDTH = 320


class RenderShot(Stage[ShotTask, RenderedShot]):
    resources = Resources(cpus=1)

    def __init__(self, settings: Settings | None = None, *, crf: int = 20, preset: str = "veryfast", jpeg_quality: int = 90) -> None:
        self.media = MediaAccess(settings)
        self.writer = OutputWriter(settings)
        self.crf, self.preset, self.quality = crf, preset, jpeg_quality

    def process(self, item: ShotTask) -> list[RenderedShot]:
        path = self.media.path(item.video.source)
        stem, n = item.video.source.stem, f"{item.shot.index:03d}"
        with tempfile.TemporaryDirectory(prefix="farm-shot-") as tmp:
            clip = Path(tmp) / "clip.mp4" if item.clip else None
            cut = cut_shot(path, item, clip, crf=self.crf, preset=self.preset)
            stored_clip = self.writer.put(item, f"{stem}.shot-{n}.mp4", clip) if clip is not None else None
        stored: list[StoredFile] = []
        if item.keyframes:
            for j, image in enumerate(cut.images):
                suffix = "" if j == 0 else f"-{j + 1}"
                stored.append(self.writer.put(item, f"{stem}.shot-{n}{suffix}.jpg", jpeg(image, self.quality)))
        thumb = jpeg(thumbnail(cut.images[0]), 85) if cut.images else None
        return [RenderedShot(item, tuple(stored), stored_clip, thumb, cut.frames, cut.audio)]


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
    images: list[Image.Image]  # the shot's keyframes, upright
    frames: int  # frames decoded (and written, for a clip)
    audio: bool  # the clip carries the source's audio


def cut_shot(path: Path, task: ShotTask, clip: Path | None, *, crf: int = 20, preset: str = "veryfast") -> Cut:
    """Decode the shot once: keyframe images always, and the clip when ``clip`` is a path."""
    with av.open(str(path)) as src:
        if clip is None:
            images, frames = _decode(src, task, None)
            return Cut(images, frames, audio=False)
        with av.open(str(clip), "w") as out:
            enc = _video_encoder(out, task.video, src.streams.video[0].time_base, crf, preset)
            audio_in = src.streams.audio[0] if src.streams.audio else None
            audio_out = out.add_stream("aac", rate=audio_in.rate, layout=_layout(audio_in)) if audio_in is not None else None
            images, frames = _decode(src, task, (out, enc))
            if frames != task.shot.frames:
                raise MediaError(f"shot {task.shot.index}: decoded {frames} of its {task.shot.frames} frames")
            if audio_in is not None and audio_out is not None:
                tb = src.streams.video[0].time_base
                _copy_audio(src, audio_in, out, audio_out, float(task.pts[0] * tb), float(task.pts[-1] * tb))
        return Cut(images, frames, audio=audio_in is not None)


def _decode(src: av.container.InputContainer, task: ShotTask,
            sink: tuple[av.container.OutputContainer, av.video.stream.VideoStream] | None) -> tuple[list[Image.Image], int]:
    """Frames with pts in [first, stop): keyframes kept as images, all re-encoded into ``sink``."""
    stream, shot = src.streams.video[0], task.shot
    first, stop = int(task.pts[0]), int(task.pts[-1])
    wanted = {k: i for i, k in enumerate(shot.keyframes)}
    images: list[Image.Image | None] = [None] * len(wanted)
    written = 0
    src.seek(first, stream=stream, backward=True)
    try:
        for frame in src.decode(stream):
            if frame.pts is None or frame.pts < first:
                continue
            if frame.pts >= stop:
                break
            index = shot.start + int(np.searchsorted(task.pts[:-1], frame.pts))
            if index in wanted:
                images[wanted[index]] = upright(frame.to_image(), task.video.rotation)
            written += 1
            if sink is None:
                if all(i is not None for i in images):
                    break
                continue
            out, enc = sink
            frame.pts, frame.pict_type = frame.pts - first, av.video.frame.PictureType.NONE
            out.mux(enc.encode(frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p")))
    except av.error.FFmpegError as exc:
        raise MediaError(f"corrupt: shot {shot.index} stops decoding after {written} frames ({exc})") from None
    if sink is not None:
        sink[0].mux(sink[1].encode())
    return [i for i in images if i is not None], written


def _video_encoder(out: av.container.OutputContainer, video: Video, time_base: Fraction, crf: int, preset: str) -> av.video.stream.VideoStream:
    enc = out.add_stream("libx264", rate=video.rate)
    enc.width, enc.height, enc.pix_fmt = video.width - video.width % 2, video.height - video.height % 2, "yuv420p"
    enc.time_base = time_base  # the source's clock: timestamps copy over exactly, VFR included
    enc.options = {"preset": preset, "crf": str(crf)}
    enc.codec_context.thread_count = 1  # one CPU per render task; shots run in parallel
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
