"""The slow camera move over a held keyframe, and crossfade weights: pure geometry on the frame clock."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


def ease(p: float) -> float:
    """Smoothstep: the move starts and ends gently."""
    p = min(1.0, max(0.0, p))
    return p * p * (3 - 2 * p)


def view_box(camera: str, p: float, width: int, height: int, amount: float) -> Box:
    """The part of a ``width``×``height`` keyframe in view at progress ``p`` (0 → 1) of a shot.

    Pushes and pulls zoom by ``amount``; pans and tilts travel ``amount`` of
    the frame inside a view zoomed by it; a static shot still creeps in by a
    quarter of it, so no frame of the animatic is a frozen still.
    """
    e = ease(p)
    zoom, fx, fy = 1.0 + amount, 0.5, 0.5  # zoom, and where the view sits in the slack (0: left/top, 1: right/bottom)
    if camera == "push in":
        zoom = 1.0 + amount * e
    elif camera == "pull out":
        zoom = 1.0 + amount * (1 - e)
    elif camera == "pan left":
        fx = 1 - e
    elif camera == "pan right":
        fx = e
    elif camera == "tilt up":
        fy = 1 - e
    elif camera == "tilt down":
        fy = e
    else:  # static
        zoom = 1.0 + amount / 4 * e
    w, h = width / zoom, height / zoom
    left, top = (width - w) * fx, (height - h) * fy
    return (left, top, left + w, top + h)


@dataclass(frozen=True)
class Blend:
    """Frame ``frame`` of the animatic: shot ``shot`` at progress ``p``, mixed with ``other`` at ``other_p`` by ``weight``."""

    frame: int
    shot: int
    p: float
    other: int | None = None
    other_p: float = 0.0
    weight: float = 0.0  # of ``other``


def schedule(bounds: list[tuple[int, int]], crossfade: int) -> list[Blend]:
    """Every frame of shots laid end to end (``[(start, end)]``), crossfading ``crossfade`` frames around each cut.

    A crossfade sits on the cut (half before, half after), never longer than
    either shot, so the animatic keeps exactly the frames of its shot list.
    """
    out: list[Blend] = []
    for i, (start, end) in enumerate(bounds):
        length = end - start
        for f in range(start, end):
            p = (f - start + 0.5) / length
            out.append(Blend(f, i, p))
    if crossfade <= 1:
        return out
    for i in range(1, len(bounds)):
        cut = bounds[i][0]
        k = min(crossfade, bounds[i - 1][1] - bounds[i - 1][0], bounds[i][1] - bounds[i][0])
        first = cut - k // 2
        for j in range(k):
            f = first + j
            weight = (j + 0.5) / k  # share of the later shot
            before, after = bounds[i - 1], bounds[i]
            p_before = (f - before[0] + 0.5) / (before[1] - before[0])
            p_after = (f - after[0] + 0.5) / (after[1] - after[0])
            if f < cut:
                out[f] = Blend(f, i - 1, p_before, i, max(0.0, p_after), weight)
            else:
                out[f] = Blend(f, i, p_after, i - 1, min(1.0, p_before), 1 - weight)
    return out
