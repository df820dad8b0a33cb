"""Read a JPG or PNG into an :class:`Artwork`, refusing anything else with one clear sentence.

The file is read once into memory through a read-only handle, so it is never modified and every
decode below sees the same bytes even if the file changes meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps

from sfumato.errors import BadImageError, SfumatoError, TransientError, TruncatedImageError
from sfumato.fileops import is_transient_oserror
from sfumato.images import png16
from sfumato.images.artwork import Artwork
from sfumato.images.metadata import (
    clean_exif,
    estimate_jpeg_quality,
    png_colour_chunks,
)
from sfumato.images.sniffing import HEADER_BYTES, describe_other, looks_unfinished, sniff_bytes

DEFAULT_MAX_PIXELS = 200_000_000

# The shortest side a picture must have to be cloaked. The engine's smoothing kernels and SSIM
# window need a few pixels to pad against (a 1×1 image crashes the search), its JPEG views work
# on 8×8 blocks, and a cloak must survive at least a few of them; below 32 pixels a picture is an
# icon, not artwork anyone would train on. ``sfumato cloak`` and the daemon both ask for it.
MIN_CLOAK_SIDE = 32

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

# Pillow's decompression-bomb limit is one process-wide global; it is changed only while we open
# a file, under this lock, and put back afterwards.
_PIXEL_LIMIT_LOCK = threading.Lock()


def _describe_limit(max_pixels: int) -> str:
    if max_pixels >= 1_000_000:
        return f"{max_pixels / 1_000_000:g}-megapixel limit"
    return f"{max_pixels}-pixel limit"


@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    with _PIXEL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                # Between 1× and 2× the limit Pillow only warns; we refuse below, with the size.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _damaged(path: Path, data: bytes) -> BadImageError:
    """A file cut short (no end marker) is told apart: it is most often still being written."""
    if looks_unfinished(data):
        return TruncatedImageError(
            f"{path.name}: the image is truncated (the file ends before the image does)"
        )
    return BadImageError(f"{path.name}: the image is truncated or corrupt")


def _unreadable(path: Path, exc: OSError, otherwise: BadImageError) -> SfumatoError:
    """A transient error (a network drive gone for a moment) may pass on retry; ``otherwise`` won't."""
    if is_transient_oserror(exc):
        return TransientError(f"{path.name}: could not be read ({exc.strerror})")
    return otherwise


@contextlib.contextmanager
def _decoding(path: Path, data: bytes) -> Iterator[None]:
    """Turn whatever Pillow raises on a damaged file into one sentence about that file."""
    try:
        yield
    except MemoryError as exc:
        raise TransientError(f"{path.name}: not enough memory to decode the image") from exc
    except OSError as exc:
        raise _unreadable(path, exc, _damaged(path, data)) from exc
    except _DECODE_ERRORS as exc:
        raise _damaged(path, data) from exc


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
            if not head:
                raise BadImageError(f"{path.name}: the file is empty")
            if sniff_bytes(head) is None:
                raise BadImageError(f"{path.name}: not a JPG or PNG image ({describe_other(head)})")
            return head + handle.read()
    except FileNotFoundError as exc:
        raise BadImageError(f"{path.name}: the file does not exist (any more)") from exc
    except IsADirectoryError as exc:
        raise BadImageError(f"{path.name}: is a folder, not an image") from exc
    except PermissionError as exc:
        raise BadImageError(f"{path.name}: cannot be read (permission denied)") from exc
    except OSError as exc:
        raise _unreadable(path, exc, BadImageError(f"{path.name}: cannot be read ({exc.strerror})")) from exc


def _open(data: bytes, path: Path, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Parse the header only; the size is checked before any pixel is decoded."""
    with _decoding(path, data), _pixel_limit(max_pixels):
        try:
            img = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
        except Image.DecompressionBombError as exc:
            raise BadImageError(
                f"{path.name}: the image is far larger than the {_describe_limit(max_pixels)}"
            ) from exc
    width, height = img.size
    if width * height > max_pixels:
        raise BadImageError(
            f"{path.name}: {width}×{height} pixels is larger than the {_describe_limit(max_pixels)}"
        )
    if width == 0 or height == 0:
        raise BadImageError(f"{path.name}: the image has no pixels")
    if min(width, height) < min_side:
        raise BadImageError(
            f"{path.name}: {width}×{height} pixels is too small to cloak "
            f"(at least {min_side} pixels on the short side)"
        )
    if getattr(img, "n_frames", 1) > 1 and img.format == "PNG":
        raise BadImageError(f"{path.name}: animated PNGs are not supported")
    return img


def _orientation(img: Image.Image) -> int:
    """EXIF (or XMP) orientation 1-8; unreadable EXIF counts as upright rather than failing."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except (SyntaxError, ValueError, TypeError, KeyError, struct.error, OSError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(img: Image.Image) -> Image.Image:
    if _orientation(img) != 1:
        ImageOps.exif_transpose(img, in_place=True)
    return img


def _cmyk_to_rgb(img: Image.Image) -> tuple[Image.Image, bytes | None]:
    """Through the embedded profile to sRGB where possible, else Pillow's naive conversion."""
    icc = img.info.get("icc_profile")
    if icc:
        with contextlib.suppress(ImageCms.PyCMSError, OSError, ValueError, TypeError):
            srgb = ImageCms.createProfile("sRGB")
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(img, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted, ImageCms.ImageCmsProfile(srgb).tobytes()
    return img.convert("RGB"), None


def _key_alpha(colour: np.ndarray, key: object, maximum: int) -> np.ndarray | None:
    """Alpha from a tRNS colour key (one transparent grey or RGB value), or None if unusable."""
    values = (key,) if isinstance(key, int) else tuple(key) if isinstance(key, tuple) else None
    if values is None or len(values) != colour.shape[2]:
        return None
    transparent = np.all(colour == np.asarray(values, dtype=colour.dtype), axis=2)
    return np.where(transparent, 0, maximum).astype(colour.dtype)


def _samples(img: Image.Image, wide: str | None, reopen: Callable) -> tuple[np.ndarray, int, bool] | None:
    """Stored samples (H×W×C, C = colour channels + alpha) as uint8/uint16, bit depth, greyscale;
    None for a colour mode we do not handle."""
    mode = img.mode
    if wide is not None:
        return png16.decode_wide(img, wide, reopen), 16, wide == "LA;16B"
    if mode == "I;16":
        return np.asarray(img, dtype=np.uint16)[..., None], 16, True
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode == "P":
        # Expanded to RGB(A): re-quantising the cloaked pixels to a palette would erase the cloak.
        has_alpha = "transparency" in img.info or (img.palette and img.palette.mode == "RGBA")
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB")), 8, False
    if mode in ("L", "LA", "RGB", "RGBA"):
        samples = np.asarray(img)
        return (samples[..., None] if samples.ndim == 2 else samples), 8, mode in ("L", "LA")
    return None


def read_artwork(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1) -> Artwork:
    """Decode ``path`` fully (so truncation fails here, not halfway through a cloak).

    Raises BadImageError for anything that will never work (TruncatedImageError for a file cut
    short, which may still be being written; ``min_side``: pictures to be cloaked pass
    :data:`MIN_CLOAK_SIDE`) and TransientError for disk or memory trouble worth retrying.
    """
    path = Path(path)
    data = _read_bytes(path)
    img = _open(data, path, max_pixels, min_side)
    source_mode = img.mode
    wide = png16.wide_rawmode(img)  # must be asked before decoding: Pillow then drops the tile

    def reopen(patch: Callable[[Image.Image], Image.Image]) -> Image.Image:
        again = patch(_open(data, path, max_pixels))
        again.load()
        return _upright(again)

    with _decoding(path, data):
        img.load()
        orientation = _orientation(img)
        _upright(img)
        icc = img.info.get("icc_profile") or None
        pixels = img
        if img.mode == "CMYK":
            pixels, icc = _cmyk_to_rgb(img)
        found = _samples(pixels, wide, reopen)
    if found is None:
        raise BadImageError(f"{path.name}: the {source_mode} colour mode is not supported")
    samples, bit_depth, greyscale = found
    info = img.info

    colour, alpha = samples, None
    if samples.shape[2] in (2, 4):
        colour, alpha = samples[..., :-1], np.ascontiguousarray(samples[..., -1])
    elif "transparency" in info and source_mode != "P":
        alpha = _key_alpha(colour, info["transparency"], (1 << bit_depth) - 1)
    rgb = colour.astype(np.float32)
    rgb /= np.float32((1 << bit_depth) - 1)  # in place: a 24-megapixel image is 288 MB per float copy
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)

    dpi = info.get("dpi")
    if dpi is not None:
        dpi = (float(dpi[0]), float(dpi[1]))
        if orientation >= 5:  # a quarter turn swaps what is horizontal
            dpi = (dpi[1], dpi[0])
    xmp = info.get("xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    text = getattr(img, "text", None) or {}
    # MPO (a camera JPEG with extra frames) counts as JPEG: its first frame is the picture.
    fmt = sniff_bytes(data[:HEADER_BYTES]) or "JPEG"
    return Artwork(
        path=path,
        format=fmt,
        rgb=np.ascontiguousarray(rgb),
        alpha=alpha,
        bit_depth=bit_depth,
        greyscale=greyscale,
        source_mode=source_mode,
        icc_profile=icc,
        exif=clean_exif(info.get("exif")),
        png_text={k: str(info.get(k, v)) for k, v in text.items() if k != "XML:com.adobe.xmp"},
        dpi=dpi,
        jpeg_quality=estimate_jpeg_quality(img) if fmt == "JPEG" else None,
        xmp=xmp,
        comment=(info.get("comment") or None) if fmt == "JPEG" else None,
        png_colour_chunks=png_colour_chunks(info) if fmt == "PNG" else [],
    )
