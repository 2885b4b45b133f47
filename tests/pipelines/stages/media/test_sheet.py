"""The contact sheet: a captioned grid of thumbnails."""

from __future__ import annotations

import io

from PIL import Image

from pipelines.stages.media.sheet import contact_sheet


def test_contact_sheet_grid() -> None:
    def thumb(color: tuple[int, int, int]) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (320, 180), color).save(buf, "JPEG")
        return buf.getvalue()

    thumbs = [thumb((200, 30, 30)), None, thumb((30, 200, 30)), thumb((30, 30, 200)), thumb((200, 200, 30)), thumb((9, 9, 9))]
    sheet = Image.open(io.BytesIO(contact_sheet(thumbs, [f"#{i:03d}" for i in range(1, 7)], columns=5, title="t")))
    assert sheet.format == "JPEG" and sheet.width == 6 + 5 * 326
    assert sheet.height > 2 * 180  # two rows
    red = sheet.getpixel((6 + 160, 28 + 6 + 90))
    assert red[0] > 150 and red[1] < 80
