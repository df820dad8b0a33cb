"""16-bit colour PNGs at full precision, which Pillow (up to 13 at least) only handles in greyscale.

Pillow decodes 16-bit RGB(A) and grey+alpha PNGs to 8 bits per channel and cannot write them.
Reading: Pillow's own PNG decoder is run a second time with a rawmode that keeps the *other* byte
of each sample ("RGB;16L" on big-endian data keeps the low byte), or, for grey+alpha, with a
4-byte rawmode that keeps all stored bytes; the filters are undone by Pillow either way.
Writing: pypng writes the pixels (it handles all four 16-bit layouts; OpenCV's encoder refuses
grey+alpha), and Pillow the metadata chunks (via ``PngImagePlugin.getchunks`` on a 1×1 stand-in),
which go in right after IHDR, where Pillow itself puts them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import png
from PIL import Image, PngImagePlugin

# Pillow rawmodes of the 16-bit PNG layouts that it truncates to 8 bits.
WIDE_RAWMODES = ("RGB;16B", "RGBA;16B", "LA;16B")

# Decoding big-endian samples as little-endian makes Pillow keep the low byte instead of the high.
_LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}

_PIXEL_CHUNKS = (b"IHDR", b"IDAT", b"IEND")  # pypng's; Pillow's 1×1 stand-in's are dropped


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


def encode_png16(samples: np.ndarray, *, compress_level: int = 6, **save_params: Any) -> bytes:
    """A 16-bit PNG of ``samples`` (H×W×C uint16, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    ``save_params`` are Pillow's PNG save options for metadata (icc_profile, dpi, exif, pnginfo).
    """
    height, width, channels = samples.shape
    writer = png.Writer(
        width,
        height,
        greyscale=channels <= 2,
        alpha=channels in (2, 4),
        bitdepth=16,
        compression=compress_level,
    )
    pixels = io.BytesIO()
    writer.write(pixels, samples.reshape(height, width * channels))
    ihdr, *rest = png.Reader(bytes=pixels.getvalue()).chunks()
    metadata = PngImagePlugin.getchunks(Image.new("L", (1, 1)), **save_params)
    ours = [(kind, data) for kind, data, _crc in metadata if kind not in _PIXEL_CHUNKS]
    out = io.BytesIO()
    png.write_chunks(out, [ihdr, *ours, *rest])
    return out.getvalue()
