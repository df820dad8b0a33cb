"""Recognise JPG and PNG files by their first bytes: extensions lie, and the daemon must decide
cheaply whether a new file in an outbox is an image at all."""

from __future__ import annotations

from pathlib import Path

HEADER_BYTES = 32

_SUPPORTED = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))

# Formats people commonly drop into a folder by mistake, named in the error message.
_OTHERS = (
    (0, b"GIF87a", "a GIF"),
    (0, b"GIF89a", "a GIF"),
    (0, b"BM", "a BMP"),
    (0, b"II*\x00", "a TIFF"),
    (0, b"MM\x00*", "a TIFF"),
    (0, b"8BPS", "a Photoshop PSD"),
    (0, b"%PDF", "a PDF"),
    (0, b"\x00\x00\x01\x00", "an ICO"),
    (0, b"\xff\x0a", "a JPEG XL"),
    (4, b"JXL ", "a JPEG XL"),
    (0, b"PK\x03\x04", "a ZIP archive (perhaps a .kra or .procreate file)"),
    (0, b"gimp xcf", "a GIMP XCF"),
    (8, b"WEBP", "a WebP"),
    (8, b"avif", "an AVIF"),
    (8, b"heic", "a HEIC"),
    (8, b"heix", "a HEIC"),
    (8, b"mif1", "a HEIF"),
)


def sniff_bytes(head: bytes) -> str | None:
    """ "PNG", "JPEG" or None for the first bytes of a file."""
    for magic, name in _SUPPORTED:
        if head.startswith(magic):
            return name
    return None


def describe_other(head: bytes) -> str:
    """A few words on what an unsupported file looks like, for the one-sentence error."""
    for offset, magic, name in _OTHERS:
        if head[offset : offset + len(magic)] == magic:
            return f"it looks like {name}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # the header may end inside a multi-byte character
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
    if text and all(ch.isprintable() or ch.isspace() for ch in text):
        return "it looks like text"
    return "its content is not recognised"


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


def looks_unfinished(data: bytes) -> bool:
    """Whether a PNG or JPEG lacks its end marker (IEND, EOI): the file was cut short, most often
    because it is still being written. Only asked of data that failed to decode."""
    fmt = sniff_bytes(data[:HEADER_BYTES])
    if fmt == "PNG":
        return not data.endswith(_PNG_END)
    if fmt == "JPEG":
        return not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END)
    return False


def sniff_format(path: Path) -> str | None:
    """ "PNG" or "JPEG" by magic bytes, or None for anything else, including unreadable files."""
    try:
        with open(path, "rb") as handle:
            return sniff_bytes(handle.read(HEADER_BYTES))
    except OSError:
        return None
