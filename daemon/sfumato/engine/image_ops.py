"""Image operations, one place for all: functions on B×C×H×W tensors in [0, 1].

The engine restyles artwork with them (the built-in styles), draws its random views from them,
and ``sfumato check`` and the benches measure through them, so what the search optimised against
and what a check applies are the same code. Each op takes the batch first and returns a batch;
unless its docstring says otherwise the output has the input's shape, device and dtype, and it is
differentiable. Names for users (``pixelart``, ``jpeg75``) are given where they are offered:
:mod:`sfumato.engine.stylizers` and :mod:`sfumato.verify.transforms`.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_grayscale, rgb_to_hsv
from kornia.enhance import jpeg_codec_differentiable, sharpness
from kornia.filters import gaussian_blur2d
from PIL import Image

# --- geometry -----------------------------------------------------------------------------------


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×C×H×W → B×C×size: bilinear with antialiasing, so gradients reach every source pixel."""
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def resize_antialiased(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`resize`, or ``images`` themselves where they already have that size (no copy, and
    no change of dtype under autocast)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return resize(images, size)


def crop(images: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """B×C×H×W → B×C×height×width: a window (a view of the same storage, not a copy)."""
    return images[..., top : top + height, left : left + width]


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirrored left to right, as re-posts and trainers' augmentations do."""
    return images.flip(-1)


# --- filters ------------------------------------------------------------------------------------


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of ``sigma`` px, with a kernel wide enough for ±2σ (reflected borders)."""
    k = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur2d(images, (k, k), (sigma, sigma), border_type="reflect")


def sharpen(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Unsharp sharpening by ``factor`` (kornia's ``sharpness``; 1 leaves the image as it is)."""
    return sharpness(images, factor)


def add_noise(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Gaussian noise of ``std``, drawn on the CPU from ``seed`` so every device gets the same."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen).to(images.device, images.dtype)
    return images + std * noise


def posterize(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Each channel rounded to ``2**bits`` levels (not differentiable: a style, not a view)."""
    levels = 2**bits - 1
    return torch.round(images * levels) / levels


# --- codecs -------------------------------------------------------------------------------------


def jpeg_differentiable(images: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG at ``quality`` (kornia's differentiable codec, run in float32): the search's stand-in
    for the real codec, which has no gradient."""
    q = torch.full((images.shape[0],), quality, device=images.device, dtype=torch.float32)
    return jpeg_codec_differentiable(images.float(), q).to(images.dtype)


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    return Image.fromarray(np.round(array * 255).astype(np.uint8), "RGB")


def _from_pil(image: Image.Image, like: torch.Tensor) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(like.device, like.dtype)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """1×3×H×W through Pillow's real JPEG codec at ``quality``: what a site does on upload, so a
    check cannot be fooled by the differentiable stand-in (no gradient)."""
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, "JPEG", quality=quality)
    return _from_pil(Image.open(io.BytesIO(buffer.getvalue())), image)


# --- what happens to a posted picture -----------------------------------------------------------


def identity(images: torch.Tensor) -> torch.Tensor:
    """The picture as posted."""
    return images


def jpeg75(image: torch.Tensor) -> torch.Tensor:
    """1×3×H×W re-saved as JPEG at quality 75, as most sites do on upload."""
    return jpeg(image, 75)


def half_size(images: torch.Tensor) -> torch.Tensor:
    """B×C×H×W → B×C×(H/2)×(W/2) (at least 8 px): thumbnails and feeds."""
    h, w = images.shape[-2:]
    return resize_antialiased(images, (max(8, h // 2), max(8, w // 2))).clamp(0, 1)


def light_blur(images: torch.Tensor) -> torch.Tensor:
    """A light Gaussian blur (σ = 1 px, 5×5), a common first attempt at washing a cloak out."""
    return gaussian_blur2d(images, (5, 5), (1.0, 1.0), border_type="reflect").clamp(0, 1)


def screenshot(images: torch.Tensor) -> torch.Tensor:
    """Shown at 75 % in a browser, captured back at full size and saved as 8-bit pixels."""
    h, w = images.shape[-2:]
    shown = resize_antialiased(images, (max(8, round(h * 0.75)), max(8, round(w * 0.75))))
    captured = F.interpolate(shown, size=(h, w), mode="bicubic", align_corners=False)
    return torch.round(captured.clamp(0, 1) * 255) / 255


# --- styles: the artwork restyled, a target for any encoder --------------------------------------
# Glaze restyles the artwork with img2img toward the target style and pulls the cloak's features
# toward that restyled version. These need no model, so they work with any encoder and offline.
# Each takes B×3×H×W and returns B×3×H×W; they are not differentiable (a target needs no gradient).


def pixelart(images: torch.Tensor, factor: int = 12, bits: int = 3) -> torch.Tensor:
    """Downscale by 12 (bilinear), posterize to 3 bits per channel, upscale with nearest neighbour."""
    h, w = images.shape[-2:]
    small = resize(images, (max(1, h // factor), max(1, w // factor)))
    return F.interpolate(posterize(small.clamp(0, 1), bits), size=(h, w), mode="nearest")


def popart(images: torch.Tensor) -> torch.Tensor:
    """Screen-print pop art: saturated, contrasty, two bits per channel."""
    hsv = rgb_to_hsv(images.clamp(0, 1))
    h, s, v = hsv.unbind(1)
    s = (s * 1.8).clamp(0, 1)
    v = ((v - 0.5) * 1.6 + 0.5).clamp(0, 1)
    boosted = hsv_to_rgb(torch.stack([h, s, v], dim=1))
    smooth = gaussian_blur2d(boosted, (5, 5), (1.5, 1.5), border_type="reflect")
    return posterize(smooth, 2)


def sketch(images: torch.Tensor) -> torch.Tensor:
    """Pencil sketch: a colour-dodge of the greyscale image by its blurred negative."""
    grey = rgb_to_grayscale(images.clamp(0, 1))
    size = max(3, (min(images.shape[-2:]) // 48) | 1)
    blurred = gaussian_blur2d(1 - grey, (size, size), (size / 3, size / 3), border_type="reflect")
    dodge = (grey / (1 - blurred).clamp_min(1e-3)).clamp(0, 1)
    lines = dodge.pow(3)  # darken the strokes, keep paper white
    return lines.expand(-1, 3, -1, -1).contiguous()


def mosaic(images: torch.Tensor, tiles: int = 40) -> torch.Tensor:
    """Tile mosaic: square tiles of their mean colour, separated by dark grout."""
    h, w = images.shape[-2:]
    tile = max(4, min(h, w) // tiles)
    small = F.adaptive_avg_pool2d(images, (max(1, h // tile), max(1, w // tile)))
    big = F.interpolate(small, size=(h, w), mode="nearest")
    ys = torch.arange(h, device=images.device) % tile
    xs = torch.arange(w, device=images.device) % tile
    grout = ((ys[:, None] < max(1, tile // 8)) | (xs[None, :] < max(1, tile // 8))).to(images.dtype)
    return big * (1 - 0.8 * grout)


def halftone(images: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """Comic-book halftone: per channel, dots whose size follows the local ink density."""
    h, w = images.shape[-2:]
    cell = max(4, min(h, w) // 64, cell)
    ink = 1 - F.adaptive_avg_pool2d(images, (max(1, h // cell), max(1, w // cell)))
    ink = F.interpolate(ink, size=(h, w), mode="nearest")
    ys = (torch.arange(h, device=images.device) % cell + 0.5) / cell - 0.5
    xs = (torch.arange(w, device=images.device) % cell + 0.5) / cell - 0.5
    radius = (ys[:, None] ** 2 + xs[None, :] ** 2).sqrt() / 0.5**0.5  # 0 at centre, 1 at corner
    return (radius[None, None] > ink.sqrt()).to(images.dtype)
