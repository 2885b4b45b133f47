"""The contact sheet: every shot's keyframe in a grid, captioned with its number and timecode."""

from __future__ import annotations

import io
from collections.abc import Sequence
from math import ceil

from PIL import Image, ImageDraw, ImageFont

CELL_WIDTH = 320
CAPTION = 22
GAP = 6
BACKGROUND = (24, 24, 24)


def contact_sheet(thumbs: Sequence[bytes | None], captions: Sequence[str], *, columns: int = 5, title: str = "") -> bytes:
    """A JPEG grid of ``thumbs`` (JPEG bytes; None draws a grey cell) with one caption each."""
    if len(thumbs) != len(captions):
        raise ValueError("one caption per thumbnail")
    images = [Image.open(io.BytesIO(t)).convert("RGB") if t else None for t in thumbs]
    cell_h = max((round(i.height * CELL_WIDTH / i.width) for i in images if i is not None), default=CELL_WIDTH * 9 // 16)
    cols = max(1, min(columns, len(images)))
    rows = max(1, ceil(len(images) / cols))
    top = CAPTION + GAP if title else 0
    sheet = Image.new("RGB", (GAP + cols * (CELL_WIDTH + GAP), top + GAP + rows * (cell_h + CAPTION + GAP)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    if title:
        draw.text((GAP, GAP), title, fill=(240, 240, 240), font=font)
    for n, (image, caption) in enumerate(zip(images, captions)):
        x = GAP + (n % cols) * (CELL_WIDTH + GAP)
        y = top + GAP + (n // cols) * (cell_h + CAPTION + GAP)
        if image is None:
            draw.rectangle((x, y, x + CELL_WIDTH - 1, y + cell_h - 1), fill=(80, 80, 80))
        else:
            image.thumbnail((CELL_WIDTH, cell_h))
            sheet.paste(image, (x + (CELL_WIDTH - image.width) // 2, y + (cell_h - image.height) // 2))
        draw.text((x + 2, y + cell_h + 3), caption, fill=(230, 230, 230), font=font)
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=88)
    return buf.getvalue()
