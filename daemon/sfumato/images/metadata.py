"""Metadata that travels with an artwork: EXIF without stale orientation, GPS detection, PNG colour
chunks, and a cheap estimate of a JPEG's quality."""

from __future__ import annotations

import contextlib
import io
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image

_EXIF_ERRORS = (SyntaxError, ValueError, TypeError, KeyError, struct.error, OSError)


def clean_exif(raw: bytes | None) -> bytes | None:
    """EXIF fit for an upright copy: Orientation removed, embedded thumbnail (IFD1) dropped.

    The thumbnail shows the *uncloaked* picture, so it must never be copied to a cloaked file.
    Unreadable EXIF is dropped rather than failing the artwork.
    """
    if not raw:
        return None
    exif = Image.Exif()
    try:
        exif.load(raw)
        exif.pop(ExifTags.Base.Orientation, None)
        data = exif.tobytes()
    except _EXIF_ERRORS:
        return None
    return data if len(exif) else None


def _gps_in_exif(exif: Image.Exif) -> bool:
    with contextlib.suppress(*_EXIF_ERRORS):
        return bool(exif.get_ifd(ExifTags.IFD.GPSInfo))
    return False


def has_gps(path: Path) -> bool:
    """Whether a JPG/PNG file carries a location, in EXIF or in XMP: what ``strip`` must remove."""
    with Image.open(path) as img:
        img.load()
        if _gps_in_exif(img.getexif()):
            return True
        xmp = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    return b"GPSLatitude" in xmp or b"GPSLongitude" in xmp


def png_colour_chunks(info: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """sRGB/gAMA/cHRM chunks rebuilt from the values Pillow decoded, so the writer can keep them."""
    chunks = []
    if "srgb" in info:
        chunks.append((b"sRGB", bytes([int(info["srgb"])])))
    if "gamma" in info:
        chunks.append((b"gAMA", struct.pack(">I", round(float(info["gamma"]) * 100000))))
    chromaticity = info.get("chromaticity")
    if chromaticity is not None and len(chromaticity) == 8:
        chunks.append((b"cHRM", struct.pack(">8I", *(round(v * 100000) for v in chromaticity))))
    return chunks


@lru_cache(maxsize=1)
def _reference_luma_table() -> np.ndarray:
    """libjpeg's quality-50 luminance table, which is the JPEG standard's example table."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "JPEG", quality=50)
    with Image.open(buffer) as img:
        return np.asarray(img.quantization[0], dtype=np.float64)


def estimate_jpeg_quality(img: Image.Image) -> int | None:
    """The libjpeg quality setting that best explains the luminance table, or None if unknown.

    Inverts libjpeg's scaling (table = reference × S / 100 with S = 5000/Q below 50, 200 - 2Q
    above); exact for libjpeg-made files, a fair guess for others.
    """
    tables = getattr(img, "quantization", None)
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    table = np.asarray(tables[0], dtype=np.float64)
    scale = 100.0 * table.sum() / _reference_luma_table().sum()
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))
