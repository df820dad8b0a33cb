"""One decoded artwork: upright float pixels for the engine, and all the writer needs to match."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Artwork:
    """What :func:`~sfumato.images.read_artwork` found in a file.

    ``rgb`` is what the engine cloaks; every other field exists so that the writer can give the
    cloaked pixels back the source's format, depth, alpha, colour profile and (if asked) metadata.
    """

    path: Path
    format: str  # "PNG" or "JPEG", from the content, never the extension
    rgb: np.ndarray  # float32 H×W×3 in [0, 1], upright; 8-bit v/255, 16-bit v/65535
    alpha: np.ndarray | None  # uint8 or uint16 H×W exactly as stored (upright), or None
    bit_depth: int  # 8 or 16 per channel: the writer quantises back to this
    greyscale: bool  # the source had one colour channel: the writer averages back to one
    source_mode: str  # Pillow's mode of the source ("RGB", "P", "I;16", "CMYK"...), for reports
    icc_profile: bytes | None  # kept under every metadata policy: it is colour, not metadata
    exif: bytes | None  # starts with b"Exif\0\0"; Orientation removed since pixels are upright
    png_text: dict[str, str]  # PNG tEXt/zTXt/iTXt chunks other than XMP
    dpi: tuple[float, float] | None
    jpeg_quality: int | None  # estimated from the quantisation tables of a JPEG source
    xmp: bytes | None = None  # XMP packet (JPEG APP1 or PNG iTXt), orientation removed
    comment: bytes | None = None  # JPEG COM marker
    # PNG sRGB/gAMA/cHRM chunks as (type, payload): colour, so kept like the ICC profile
    png_colour_chunks: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image, as Pillow and users count it."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])
