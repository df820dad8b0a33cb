"""Procedural stylizers: restyle the artwork itself, so every encoder has a target.

Glaze restyles the artwork with img2img toward the target style and pulls the cloak's features
toward that restyled version. These stylizers need no model, so they work with any encoder and
offline. Each maps an image batch B×3×H×W in [0, 1] to one of the same size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_grayscale, rgb_to_hsv
from kornia.filters import gaussian_blur2d


def posterize(image: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return torch.round(image * levels) / levels


def pixelart(image: torch.Tensor, factor: int = 12, bits: int = 3) -> torch.Tensor:
    """Downscale by 12 (bilinear), posterize to 3 bits per channel, upscale with nearest neighbour."""
    h, w = image.shape[-2:]
    small = F.interpolate(
        image,
        size=(max(1, h // factor), max(1, w // factor)),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return F.interpolate(posterize(small.clamp(0, 1), bits), size=(h, w), mode="nearest")


def popart(image: torch.Tensor) -> torch.Tensor:
    """Screen-print pop art: saturated, contrasty, two bits per channel."""
    hsv = rgb_to_hsv(image.clamp(0, 1))
    h, s, v = hsv.unbind(1)
    s = (s * 1.8).clamp(0, 1)
    v = ((v - 0.5) * 1.6 + 0.5).clamp(0, 1)
    boosted = hsv_to_rgb(torch.stack([h, s, v], dim=1))
    smooth = gaussian_blur2d(boosted, (5, 5), (1.5, 1.5), border_type="reflect")
    return posterize(smooth, 1 + 1)


def sketch(image: torch.Tensor) -> torch.Tensor:
    """Pencil sketch: a colour-dodge of the greyscale image by its blurred negative."""
    grey = rgb_to_grayscale(image.clamp(0, 1))
    size = max(3, (min(image.shape[-2:]) // 48) | 1)
    blurred = gaussian_blur2d(1 - grey, (size, size), (size / 3, size / 3), border_type="reflect")
    dodge = (grey / (1 - blurred).clamp_min(1e-3)).clamp(0, 1)
    lines = dodge.pow(3)  # darken the strokes, keep paper white
    return lines.expand(-1, 3, -1, -1).contiguous()


def mosaic(image: torch.Tensor, tiles: int = 40) -> torch.Tensor:
    """Tile mosaic: square tiles of their mean colour, separated by dark grout."""
    h, w = image.shape[-2:]
    tile = max(4, min(h, w) // tiles)
    small = F.adaptive_avg_pool2d(image, (max(1, h // tile), max(1, w // tile)))
    big = F.interpolate(small, size=(h, w), mode="nearest")
    ys = torch.arange(h, device=image.device) % tile
    xs = torch.arange(w, device=image.device) % tile
    grout = ((ys[:, None] < max(1, tile // 8)) | (xs[None, :] < max(1, tile // 8))).to(image.dtype)
    return big * (1 - 0.8 * grout)


def halftone(image: torch.Tensor, cell: int = 8) -> torch.Tensor:
    """Comic-book halftone: per channel, dots whose size follows the local ink density."""
    h, w = image.shape[-2:]
    cell = max(4, min(h, w) // 64, cell)
    ink = 1 - F.adaptive_avg_pool2d(image, (max(1, h // cell), max(1, w // cell)))
    ink = F.interpolate(ink, size=(h, w), mode="nearest")
    ys = (torch.arange(h, device=image.device) % cell + 0.5) / cell - 0.5
    xs = (torch.arange(w, device=image.device) % cell + 0.5) / cell - 0.5
    radius = (ys[:, None] ** 2 + xs[None, :] ** 2).sqrt() / 0.5**0.5  # 0 at centre, 1 at corner
    return (radius[None, None] > ink.sqrt()).to(image.dtype)


STYLIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "pixelart": pixelart,
    "popart": popart,
    "sketch": sketch,
    "mosaic": mosaic,
    "halftone": halftone,
}
