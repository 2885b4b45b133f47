"""The last restyle stage: a video's chunks joined into one MP4 with the source's audio, and a before/after sheet.

Runs on a worker, next to the bytes: chunk files are remuxed, never
re-encoded, so the join costs a copy; the audio stream is copied packet for
packet. The contact sheet shows each shot's anchor frame as it was and as
rendered (for a preview, the rendered stills are the chunks themselves).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from pipelines.stages.base import MediaError, Resources, Stage
from pipelines.stages.media.access import media_path
from pipelines.stages.media.frames import decode_frames, join_chunks, working_size
from pipelines.stages.media.segment import jpeg
from pipelines.stages.media.sheet import contact_sheet
from pipelines.stages.payloads import Source, Video

if TYPE_CHECKING:
    from farm.runner.objects import ObjectHandle, StoredFile

TILE_SHORT = 160  # short side of each half of a before/after tile


@dataclass(frozen=True)
class JoinTask:
    video: Video
    chunk_keys: tuple[str, ...]  # the chunks' objects in frame order (preview: one PNG per shot)
    anchors: tuple[tuple[int, int], ...]  # (shot, anchor frame), in shot order
    preview: bool

    @property
    def source(self) -> Source:
        return self.video.source


@dataclass(frozen=True)
class Joined:
    task: JoinTask
    video: StoredFile | None  # None for a preview
    sheet: StoredFile
    frames: int
    keyframes: tuple[int, ...]
    has_audio: bool
    duration: float


class JoinVideo(Stage[JoinTask, Joined]):
    resources = Resources(cpus=1)

    def __init__(self, objects: ObjectHandle) -> None:
        self.objects = objects

    def process(self, item: JoinTask) -> list[Joined]:
        source = media_path(item.source, self.objects)
        stem = item.source.stem
        with tempfile.TemporaryDirectory(prefix="restyle-join-") as tmp:
            parts = [self.objects.local_path(k) for k in item.chunk_keys]
            frames_at = [frame for _, frame in item.anchors]
            size = working_size(item.video.width, item.video.height, TILE_SHORT)
            before = decode_frames(source, frames_at, size)
            if item.preview:
                after = [Image.open(p).convert("RGB").resize(size, Image.Resampling.BILINEAR) for p in parts]
                sheet = self._sheet(item, before, after)
                return [Joined(item, None, self.objects.put(f"{stem}.restyle.jpg", sheet), 0, (), False, 0.0)]
            out = Path(tmp) / "restyled.mp4"
            report = join_chunks(parts, out, audio_from=source if item.video.has_audio else None)
            if report.frames != item.video.frames:
                raise MediaError(f"joined {report.frames} frames of the source's {item.video.frames}")
            after_frames = decode_frames(out, frames_at, size)
            sheet = self._sheet(item, before, [Image.fromarray(f) for f in after_frames])
            stored = self.objects.put(f"{stem}.restyled.mp4", out)
            return [Joined(item, stored, self.objects.put(f"{stem}.restyle.jpg", sheet), report.frames,
                           tuple(report.keyframes), report.has_audio, report.duration)]

    def _sheet(self, item: JoinTask, before: object, after: list[Image.Image]) -> bytes:
        tiles: list[bytes | None] = []
        for src, dst in zip(before, after, strict=True):  # type: ignore[call-overload]
            left = Image.fromarray(src)
            tile = Image.new("RGB", (left.width * 2 + 4, left.height), (24, 24, 24))
            tile.paste(left, (0, 0))
            tile.paste(dst.resize(left.size), (left.width + 4, 0))
            tiles.append(jpeg(tile, 88))
        captions = [f"#{shot:03d}  frame {frame}  before | after" for shot, frame in item.anchors]
        title = f"{item.source.name}: {len(item.anchors)} shots restyled" + (" (preview)" if item.preview else "")
        return contact_sheet(tiles, captions, columns=3, title=title)
