"""Split by frame: a probed video becomes frame-range chunks that workers decode in parallel.

Chunk edges move to the nearest keyframe within half a chunk, so a worker
starts decoding exactly where its range starts instead of decoding and
discarding the rest of a GOP. Chunks tile the video with no gap and no
overlap; the driver stitches their scores across each edge.
"""

from __future__ import annotations

import numpy as np

from pipelines.stages.base import Resources, Stage
from pipelines.stages.payloads import Chunk, Probed


class SplitByFrame(Stage[Probed, Chunk]):
    resources = Resources(cpus=0.1)

    def __init__(self, chunk_size: int, snap_to_keyframes: bool = True, keyframes_only: bool = False) -> None:
        if chunk_size < 2:
            raise ValueError("chunk_size must be at least 2 frames")
        self.chunk_size = chunk_size
        self.snap = snap_to_keyframes
        self.keyframes_only = keyframes_only

    def process(self, item: Probed) -> list[Chunk]:
        edges = chunk_edges(item.video.frames, item.keyframes if self.snap else None, self.chunk_size, self.keyframes_only)
        return [Chunk(item.video, int(a), int(b), pts=item.frame_pts[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def chunk_edges(frames: int, keyframes: np.ndarray | None, size: int, keyframes_only: bool = False) -> list[int]:
    """Sorted edges from 0 to ``frames``: each about ``size`` after the last, on a keyframe where one is near.

    The last chunk takes the remainder, so no chunk is shorter than half a chunk
    unless the whole video is. With ``keyframes_only``, an edge with no keyframe
    near it is not made: a chunk starting mid-GOP would decode its GOP's head
    only to throw it away, which small chunks cannot afford.
    """
    edges = [0]
    while frames - edges[-1] > size + size // 2:
        edge = ideal = edges[-1] + size
        if keyframes is not None and len(keyframes):
            nearest = int(keyframes[np.argmin(np.abs(keyframes - ideal))])
            if abs(nearest - ideal) <= size // 2 and nearest > edges[-1]:
                edge = nearest
            elif keyframes_only:
                break
        elif keyframes_only:
            break
        edges.append(edge)
    edges.append(frames)
    return edges
