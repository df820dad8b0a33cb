"""16-bit colour PNGs at full precision, which Pillow (up to 13 at least) only handles in greyscale.

Pillow decodes 16-bit RGB(A) and grey+alpha PNGs to 8 bits per channel and cannot write them.
Reading: Pillow's own PNG decoder is run a second time with a rawmode that keeps the *other* byte
of each sample ("RGB;16L" on big-endian data keeps the low byte), or, for grey+alpha, with a
4-byte rawmode that keeps all stored bytes; the filters are undone by Pillow either way.
Writing: Pillow still writes the metadata chunks (via ``PngImagePlugin.getchunks`` on a 1×1
stand-in); only IHDR and IDAT are ours: rows Paeth-filtered with numpy, deflated with zlib.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Pillow rawmodes of the 16-bit PNG layouts that it truncates to 8 bits.
WIDE_RAWMODES = ("RGB;16B", "RGBA;16B", "LA;16B")

# Decoding big-endian samples as little-endian makes Pillow keep the low byte instead of the high.
_LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}

# Channels -> PNG colour type: grey, grey+alpha, RGB, RGBA.
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
_IDAT_BYTES = 1 << 20
_PIXEL_CHUNKS = (b"IHDR", b"IDAT", b"IEND")  # ours; Pillow's 1×1 stand-in's are dropped
_BLOCK_BYTES = 4 << 20  # rows filtered per numpy pass: bounds memory on huge images


def wide_rawmode(img: Image.Image) -> str | None:
    """The rawmode of a not-yet-loaded PNG that Pillow would truncate to 8 bits, else None."""
    if img.format != "PNG" or not img.tile:
        return None
    rawmode = img.tile[0].args
    return rawmode if rawmode in WIDE_RAWMODES else None


def _with_rawmode(img: Image.Image, rawmode: str) -> Image.Image:
    img.tile = [tile._replace(args=rawmode) for tile in img.tile]
    return img


def decode_wide(
    loaded: Image.Image,
    rawmode: str,
    reopen: Callable[[Callable[[Image.Image], Image.Image]], Image.Image],
) -> np.ndarray:
    """Full 16-bit samples (H×W×C uint16) of a wide PNG whose rawmode was ``rawmode``.

    ``loaded`` is the image as Pillow decoded it (high bytes); ``reopen(patch)`` must open the same
    file again, apply ``patch`` before decoding, then load it and apply the same orientation.
    """
    if rawmode == "LA;16B":
        stored = np.asarray(reopen(lambda im: _with_rawmode(im, "RGBA")))
        return (stored[..., 0::2].astype(np.uint16) << 8) | stored[..., 1::2]
    high = np.asarray(loaded)
    low = np.asarray(reopen(lambda im: _with_rawmode(im, _LOW_BYTE_RAWMODES[rawmode])))
    return (high.astype(np.uint16) << 8) | low


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _paeth_filter(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 4 of ``rows`` (R×N bytes); ``above`` is the unfiltered row before them."""
    up = np.vstack([above[None, :], rows[:-1]])
    left = np.zeros_like(rows)
    left[:, bpp:] = rows[:, :-bpp]
    up_left = np.zeros_like(rows)
    up_left[:, bpp:] = up[:, :-bpp]
    a, b, c = (x.astype(np.int16) for x in (left, up, up_left))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)
    return rows - predictor  # uint8 arithmetic wraps modulo 256, as PNG wants


def _idat_payload(samples: np.ndarray, level: int) -> bytes:
    height = samples.shape[0]
    bpp = samples.shape[2] * 2
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(height, -1)
    compressor = zlib.compressobj(level)
    parts = []
    above = np.zeros(rows.shape[1], dtype=np.uint8)
    step = max(1, _BLOCK_BYTES // max(1, rows.shape[1]))
    for start in range(0, height, step):
        block = rows[start : start + step]
        filtered = np.empty((block.shape[0], block.shape[1] + 1), dtype=np.uint8)
        filtered[:, 0] = 4
        filtered[:, 1:] = _paeth_filter(block, above, bpp)
        parts.append(compressor.compress(filtered.tobytes()))
        above = block[-1]
    parts.append(compressor.flush())
    return b"".join(parts)


def encode_png16(samples: np.ndarray, *, compress_level: int = 6, **save_params: Any) -> bytes:
    """A 16-bit PNG of ``samples`` (H×W×C uint16, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    ``save_params`` are Pillow's PNG save options for metadata (icc_profile, dpi, exif, pnginfo).
    """
    height, width, channels = samples.shape
    metadata = PngImagePlugin.getchunks(Image.new("L", (1, 1)), **save_params)
    header = struct.pack(">IIBBBBB", width, height, 16, _COLOUR_TYPES[channels], 0, 0, 0)
    out = [PNG_MAGIC, _chunk(b"IHDR", header)]
    out += [_chunk(kind, data) for kind, data, _crc in metadata if kind not in _PIXEL_CHUNKS]
    payload = _idat_payload(samples, compress_level)
    for start in range(0, len(payload), _IDAT_BYTES):
        out.append(_chunk(b"IDAT", payload[start : start + _IDAT_BYTES]))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
