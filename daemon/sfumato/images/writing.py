"""Write cloaked pixels back in the source's own format, depth, alpha and colour profile.

PNG stays lossless (a cloak must not be blurred away by our own encoder); JPEG is written at
quality 95 with full-resolution chroma, since 4:2:0 subsampling smears exactly the fine colour
detail a cloak lives in.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from sfumato.errors import UsageError
from sfumato.fileops import atomic_write_bytes
from sfumato.images.artwork import Artwork
from sfumato.images.png16 import encode_png16
from sfumato.options import METADATA_POLICIES

JPEG_QUALITY = 95
PNG_COMPRESS_LEVEL = 6  # zlib's default: most of level 9's gain at a fraction of its time
# A JPEG marker holds 64 KiB; bigger EXIF/XMP/comments (rare) are dropped rather than failing.
_JPEG_MARKER_ROOM = 65_000
_BAND = 256  # rows quantised at a time


def _quantise(art: Artwork, rgb: np.ndarray) -> np.ndarray:
    """H×W×C samples in the source's depth: grey averaged back to one channel, alpha appended.

    Band by band, so a 24-megapixel image needs no full-size float copy beside the caller's.
    """
    maximum = (1 << art.bit_depth) - 1
    dtype = np.uint16 if art.bit_depth == 16 else np.uint8
    height, width = rgb.shape[:2]
    channels = (1 if art.greyscale else 3) + (1 if art.alpha is not None and art.format == "PNG" else 0)
    samples = np.empty((height, width, channels), dtype=dtype)
    for top in range(0, height, _BAND):
        colour = np.nan_to_num(rgb[top : top + _BAND], nan=0.0)  # a copy: the caller's array stays
        np.clip(colour, 0.0, 1.0, out=colour)
        if art.greyscale:
            colour = colour.mean(axis=2, keepdims=True)
        colour *= maximum
        np.rint(colour, out=colour)
        samples[top : top + _BAND, :, : colour.shape[2]] = colour
    if art.alpha is not None and art.format == "PNG":
        samples[..., -1] = art.alpha
    return samples


def _png_params(art: Artwork, metadata: str) -> dict[str, Any]:
    info = PngImagePlugin.PngInfo()
    for kind, payload in art.png_colour_chunks:
        info.add(kind, payload)
    params: dict[str, Any] = {"pnginfo": info}
    if metadata == "keep":
        for key, value in art.png_text.items():
            info.add_text(key, value)
        if art.xmp:
            info.add_itxt("XML:com.adobe.xmp", art.xmp.decode("utf-8", "replace"))
        if art.exif:
            params["exif"] = art.exif
    if art.icc_profile:
        params["icc_profile"] = art.icc_profile
    if art.dpi:
        params["dpi"] = art.dpi
    return params


def _jpeg_params(art: Artwork, metadata: str) -> dict[str, Any]:
    params: dict[str, Any] = {"quality": JPEG_QUALITY, "subsampling": 0, "optimize": True}
    if metadata == "keep":
        for key, value in (("exif", art.exif), ("xmp", art.xmp), ("comment", art.comment)):
            if value and len(value) <= _JPEG_MARKER_ROOM:
                params[key] = value
    if art.icc_profile:
        params["icc_profile"] = art.icc_profile
    if art.dpi:
        params["dpi"] = tuple(round(v) for v in art.dpi)
    return params


def encode_artwork(art: Artwork, rgb: np.ndarray, *, metadata: str = "strip") -> bytes:
    """The bytes of the cloaked file: ``rgb`` (float H×W×3 in [0, 1]) in ``art``'s format.

    ``metadata="strip"`` drops EXIF (so GPS), XMP, PNG text and JPEG comments; the ICC profile
    and dpi are always kept because they say how the picture looks, not who made it where.
    """
    if metadata not in METADATA_POLICIES:
        choices = ", ".join(METADATA_POLICIES)
        raise UsageError(f"metadata must be one of {choices}, not {metadata!r}")
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.shape != art.rgb.shape:
        raise UsageError(f"{art.path.name}: cloaked pixels are {rgb.shape}, expected {art.rgb.shape}")
    samples = _quantise(art, rgb)
    if art.format == "PNG":
        params = _png_params(art, metadata)
        if art.bit_depth == 16:
            return encode_png16(samples, compress_level=PNG_COMPRESS_LEVEL, **params)
        params["compress_level"] = PNG_COMPRESS_LEVEL
    else:
        params = _jpeg_params(art, metadata)
    image = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
    buffer = io.BytesIO()
    image.save(buffer, format=art.format, **params)
    return buffer.getvalue()


def write_artwork(art: Artwork, rgb: np.ndarray, path: Path, *, metadata: str = "strip") -> None:
    """Encode, then write under a temp name, fsync and rename: ``path`` is never half-written."""
    atomic_write_bytes(Path(path), encode_artwork(art, rgb, metadata=metadata))
