"""Media type from the bytes themselves, never from the client's claim or file name."""

from __future__ import annotations

import json

_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x1a\x45\xdf\xa3", "video/x-matroska"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BM", "image/bmp"),
]
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP_IMAGE = {b"avif": "image/avif", b"heic": "image/heic", b"mif1": "image/heif"}
_FTYP_QT = {b"qt  ": "video/quicktime"}
SNIFF_BYTES = 4096


def sniff(head: bytes) -> str:
    """Best guess of the content type of a payload that starts with ``head``."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        return _FTYP_IMAGE.get(brand) or _FTYP_QT.get(brand) or (
            "audio/mp4" if brand in (b"M4A ", b"M4B ") else "video/mp4"
        )
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "audio/mpeg"
    for offset, magic, ctype in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return ctype
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str:
    if not head:
        return "application/octet-stream"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the sniff window is still text
        if exc.start < len(head) - 3:
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        return "application/octet-stream"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        lines = [ln for ln in stripped.splitlines() if ln.strip()]
        complete = lines[:-1] if len(head) >= SNIFF_BYTES else lines
        if len(complete) > 1 and all(_is_json(ln) for ln in complete):
            return "application/jsonl"
        return "application/json"
    if stripped.startswith("<svg") or (stripped.startswith("<?xml") and "<svg" in stripped):
        return "image/svg+xml"
    return "text/plain"


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def kind_of(content_type: str) -> str:
    """Coarse asset kind used for filtering: video, image, audio, text, document, other."""
    major = content_type.split("/", 1)[0]
    if major in ("video", "image", "audio", "text"):
        return major
    if content_type in ("application/json", "application/jsonl"):
        return "text"
    if content_type == "application/pdf":
        return "document"
    return "other"
