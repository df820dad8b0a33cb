"""Image files in and out: JPG and PNG, recognised by content, never modified.

How each kind of input is handled (``rgb`` is what the engine cloaks; the output always has the
input's format):

- **RGB / RGBA, 8-bit** (PNG, JPEG): as they are. Alpha is never cloaked and is written back byte
  for byte; the colour of fully transparent pixels is kept too (no premultiplication).
- **16-bit RGB / RGBA PNG**: read and written at full 16-bit precision (Pillow truncates these
  to 8 bits, so :mod:`sfumato.images.png16` decodes and encodes them).
- **Greyscale** (L, LA, 16-bit grey and grey+alpha PNG, greyscale JPEG): the grey channel is
  copied into R, G and B for the engine and the writer averages them back, so the output stays
  greyscale at the same depth.
- **1-bit PNG**: read as 8-bit greyscale and written as 8-bit greyscale, since one bit per pixel
  cannot hold a cloak.
- **Palette PNG** (with or without transparency): expanded to RGB or RGBA and written as such;
  re-quantising to a palette would erase the cloak.
- **Colour-key transparency** (PNG tRNS on grey or RGB images): turned into an alpha channel.
- **CMYK JPEG**: converted to sRGB through its embedded ICC profile (LittleCMS, perceptual
  intent) and written as an RGB JPEG tagged sRGB; without a profile Pillow's plain conversion is
  used and no profile is written. The CMYK profile is not copied: it no longer applies.
- **EXIF orientation**: applied on reading, so pixels are upright; the output is written upright
  with the Orientation tag removed.
- **Animated PNG** is refused; a multi-picture JPEG (MPO) is cloaked as its first picture.
- **Colour profile**: the ICC profile (and PNG sRGB/gAMA/cHRM chunks) are always kept, as is dpi.
- **Metadata**: ``keep`` keeps EXIF (without its thumbnail, which shows the uncloaked picture),
  XMP, PNG text and JPEG comments; ``strip`` (the default) removes them all, GPS included.
- Files over ``max_pixels`` (200 megapixels by default) are refused before any pixel is decoded,
  and so are pictures to be cloaked under ``MIN_CLOAK_SIDE`` (32) pixels on the short side.
- A file cut short (no PNG IEND or JPEG EOI at its end) raises ``TruncatedImageError``: it is
  most often still being written.
"""

from sfumato.images.artwork import Artwork
from sfumato.images.metadata import has_gps
from sfumato.images.reading import DEFAULT_MAX_PIXELS, MIN_CLOAK_SIDE, read_artwork
from sfumato.images.sniffing import sniff_format
from sfumato.images.writing import JPEG_QUALITY, encode_artwork, write_artwork

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "JPEG_QUALITY",
    "MIN_CLOAK_SIDE",
    "Artwork",
    "encode_artwork",
    "has_gps",
    "read_artwork",
    "sniff_format",
    "write_artwork",
]
