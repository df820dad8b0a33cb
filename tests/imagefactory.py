"""Tiny test images made on the fly: no binary fixtures in the repository."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms


def noise(height: int = 24, width: int = 32, channels: int = 3, *, bits: int = 8, seed: int = 0):
    """Random samples: every pixel differs, so any reordering or rounding shows."""
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if bits == 16 else np.uint8
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 1 << bits, size=shape, dtype=dtype)


def smooth(height: int = 24, width: int = 32) -> np.ndarray:
    """A colour gradient, which JPEG reproduces closely (noise it would not)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / (width - 1), y / (height - 1), 1 - x / (width - 1)], axis=2)
    return np.rint(rgb * 255).astype(np.uint8)


def exif_bytes(*, orientation: int | None = None, gps: bool = False, make: str = "TestCam"):
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = "N"
        info[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
        info[ExifTags.GPS.GPSLongitudeRef] = "E"
        info[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 36.0)
    return exif.tobytes()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def save(path: Path, array_or_image, fmt: str | None = None, **params) -> Path:
    img = array_or_image
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, format=fmt or ("JPEG" if path.suffix in (".jpg", ".jpeg") else "PNG"), **params)
    return path


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


# Adam7 passes: first row, first column, row step, column step.
_ADAM7 = (
    (0, 0, 8, 8),
    (0, 4, 8, 8),
    (4, 0, 8, 4),
    (0, 2, 4, 4),
    (2, 0, 4, 2),
    (0, 1, 2, 2),
    (1, 0, 2, 1),
)


def _unfiltered_rows(samples: np.ndarray) -> bytes:
    rows = samples.astype(">u2").reshape(samples.shape[0], -1).view(np.uint8)
    return b"".join(b"\x00" + row.tobytes() for row in rows)


def png16_file(path: Path, samples: np.ndarray, *, interlace: bool = False) -> Path:
    """A 16-bit PNG written independently of sfumato (no filters), since Pillow cannot write one.

    ``samples``: H×W (grey), H×W×2 (grey+alpha), H×W×3 (RGB) or H×W×4 (RGBA), uint16.
    """
    if samples.ndim == 2:
        samples = samples[..., None]
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    if interlace:
        passes = (samples[y::dy, x::dx] for y, x, dy, dx in _ADAM7)
        raw = b"".join(_unfiltered_rows(p) for p in passes if p.size)
    else:
        raw = _unfiltered_rows(samples)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlace))
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    data += _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path
