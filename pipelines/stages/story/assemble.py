"""One story's animatic from its keyframes: the held, slowly moving frames as H.264, subtitles, storyboard, shots.

Runs as a task per story (PyAV, PIL): keyframes are read through the object
handle, every frame is the shot's keyframe seen through :func:`view_box`
(crossfaded at cuts when asked), encoded on the shot list's frame clock, so
the MP4 lasts exactly the sum of the shot durations. The narration goes in
as a soft ``mov_text`` track, an SRT sidecar, or drawn into the picture. The
finished MP4 is probed and its shots written in `video.shots`' format, so a
later job (captioning) takes them instead of detecting cuts again.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.subtitles.subtitle
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from farm.runner.objects import ObjectHandle, StoredFile
from pipelines.stages.base import MediaError, Stage
from pipelines.stages.media.probe import probe
from pipelines.stages.media.segment import jpeg, thumbnail
from pipelines.stages.media.sheet import contact_sheet
from pipelines.stages.payloads import Shot, Source, Transition
from pipelines.stages.shots.reports import shots_json
from pipelines.stages.story.motion import Blend, schedule, view_box
from pipelines.stages.story.shotlist import ShotList
from pipelines.stages.story.subtitles import ASS_HEADER, Cue, ass_dialogue, cues, srt

SUBTITLE_TIME_BASE = Fraction(1, 1000)


@dataclass(frozen=True)
class AnimaticTask:
    """Assemble one story: its shot list, each shot's keyframe object, how to encode and subtitle."""

    source: Source  # the story as an item: index, stem as name
    shotlist: ShotList
    keyframes: tuple[str, ...]  # object keys, one per shot
    width: int
    height: int
    subtitles: tuple[str, ...] = ("srt", "soft")
    crossfade_s: float = 0.0
    motion: float = 0.12
    crf: int = 20
    preset: str = "veryfast"


@dataclass(frozen=True)
class Animatic:
    """What a story's assembly stored, for the driver to record."""

    task: AnimaticTask
    video: StoredFile
    srt: StoredFile | None
    storyboard: StoredFile
    shots: StoredFile
    frames: int
    duration: float
    cues: int


class AssembleAnimatic(Stage[AnimaticTask, Animatic]):
    def __init__(self, objects: ObjectHandle) -> None:
        self.objects = objects

    def process(self, item: AnimaticTask) -> list[Animatic]:
        stem = item.source.name
        images = [self._keyframe(key, n, item) for n, key in enumerate(item.keyframes, start=1)]
        cue_list = cues(item.shotlist.shots, item.shotlist.fps)
        with tempfile.TemporaryDirectory(prefix="animatic-") as tmp:
            path = Path(tmp) / f"{stem}.animatic.mp4"
            encode(path, item, images, cue_list)
            probed = probe(path, Source(item.source.index, path.name, path=str(path)))
            if probed.video.frames != item.shotlist.frames:
                raise MediaError(f"the encoder wrote {probed.video.frames} frames for a shot list of {item.shotlist.frames}")
            video = self.objects.put(path.name, path)
            recorded_as = replace(probed.video, source=Source(item.source.index, path.name, asset_id=video.asset_id))
            detector = {"kind": "story.animatic", "shotlist": f"{stem}.shotlist.json", "crossfade_s": item.crossfade_s}
            shots_doc = shots_json(recorded_as, *animatic_shots(item), detector=detector)
        sidecar = self.objects.put(f"{stem}.srt", srt(cue_list)) if "srt" in item.subtitles and cue_list else None
        board = self.objects.put(f"{stem}.storyboard.jpg", storyboard(item, images))
        shots = self.objects.put(f"{stem}.shots.json", shots_doc)
        return [Animatic(item, video, sidecar, board, shots, probed.video.frames, probed.video.duration, len(cue_list))]

    def _keyframe(self, key: str, shot: int, item: AnimaticTask) -> Image.Image:
        try:
            image = Image.open(self.objects.local_path(key)).convert("RGB")
        except (FileNotFoundError, OSError) as exc:
            raise MediaError(f"the keyframe of shot {shot} cannot be read ({type(exc).__name__}: {exc})") from None
        return image if image.size == (item.width, item.height) else image.resize((item.width, item.height), Image.Resampling.BICUBIC)


def animatic_shots(item: AnimaticTask) -> tuple[list[Shot], list[Transition]]:
    """The shot list as `video.shots` shots: frame ranges, times, the first frame as keyframe, cuts or fades."""
    kind = "fade" if item.crossfade_s > 0 else "cut"
    fps = item.shotlist.fps
    fade = round(item.crossfade_s * fps)
    shots = [Shot(s.index, s.start_frame, s.end_frame, s.start_frame / fps, s.end_frame / fps, (s.start_frame,),
                  kind if s.index > 1 else None) for s in item.shotlist.shots]
    transitions = [Transition(s.start, kind, 1.0, s.start - fade // 2 if fade > 1 else s.start,
                              s.start + fade - fade // 2 if fade > 1 else s.start) for s in shots[1:]]
    return shots, transitions


def frame_at(blend: Blend, images: list[Image.Image], item: AnimaticTask) -> Image.Image:
    """One animatic frame: the shot's keyframe through the moving view, crossfaded when the schedule says so."""
    size = (item.width, item.height)
    shots = item.shotlist.shots

    def view(shot: int, p: float) -> Image.Image:
        box = view_box(shots[shot].camera, p, item.width, item.height, item.motion)
        return images[shot].resize(size, Image.Resampling.BILINEAR, box=box)

    frame = view(blend.shot, blend.p)
    if blend.other is not None and blend.weight > 0:
        frame = Image.blend(frame, view(blend.other, blend.other_p), blend.weight)
    return frame


def burn(frame: Image.Image, text: str) -> Image.Image:
    """The narration drawn into the lower part of the picture, on a dark band."""
    draw = ImageDraw.Draw(frame)
    font = ImageFont.load_default(size=max(10, frame.height // 16))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = max(2, (frame.width - (right - left)) // 2), frame.height - (bottom - top) - frame.height // 12
    draw.rectangle((x - 4, y - 3 + top, x + (right - left) + 4, y + bottom + 3), fill=(0, 0, 0))
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return frame


def encode(path: Path, item: AnimaticTask, images: list[Image.Image], cue_list: list[Cue]) -> None:
    """H.264 on the shot list's frame clock (frame ``f`` at ``f/fps``), the cues as a mov_text track."""
    fps = item.shotlist.fps
    bounds = [(s.start_frame, s.end_frame) for s in item.shotlist.shots]
    burned = {s.index - 1: s.narration for s in item.shotlist.shots if s.narration} if "burn" in item.subtitles else {}
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": str(item.crf), "preset": item.preset})
        video.width, video.height, video.pix_fmt = item.width, item.height, "yuv420p"
        video.time_base = Fraction(1, fps)
        text = None
        if "soft" in item.subtitles and cue_list:
            text = out.add_stream("mov_text")
            text.codec_context.subtitle_header = ASS_HEADER
            text.time_base = SUBTITLE_TIME_BASE
            text.metadata["language"] = "eng"
        for blend in schedule(bounds, round(item.crossfade_s * fps)):
            image = frame_at(blend, images, item)
            if blend.shot in burned:
                image = burn(image, burned[blend.shot])
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts, frame.time_base = blend.frame, Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if text is not None:
            for n, cue in enumerate(cue_list):
                sub = av.subtitles.subtitle.SubtitleSet.create(ass_dialogue(n, cue), 0, cue.end_ms - cue.start_ms, pts=cue.start_ms)
                packet = text.codec_context.encode_subtitle(sub)
                packet.stream, packet.pts, packet.dts = text, cue.start_ms, cue.start_ms
                packet.duration, packet.time_base = cue.end_ms - cue.start_ms, SUBTITLE_TIME_BASE
                out.mux(packet)


def storyboard(item: AnimaticTask, images: list[Image.Image]) -> bytes:
    """The storyboard sheet: each keyframe with its shot number, duration, camera and description."""
    thumbs = [jpeg(thumbnail(i.copy()), 85) for i in images]
    captions = [f"{s.index:02d}  {s.duration_s:g}s  {s.camera}: {s.visual}"[:44] for s in item.shotlist.shots]
    return contact_sheet(thumbs, captions, columns=4, title=item.shotlist.title[:80])
