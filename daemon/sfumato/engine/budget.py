"""Per-pixel budget map: spend the change where texture hides it, little on flat colour."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import box_blur, gaussian_blur2d

from sfumato.engine.levels import MAP_HEADROOM, Budget

# Local luminance std at or below which a region counts as flat: the grain of a clear sky in a
# photo (1-2 levels) masks nothing, and a change there shows as blotches.
FLAT_TEXTURE = 2 / 255
# Texture is measured in small windows, then eroded: only a pixel whose whole neighbourhood is
# textured hides a change. An isolated edge or a thin line on a smooth ground (a lattice against
# the sky, the rim of a sun's ray) masks almost nothing, and a 7-px window eroded over 5 px
# counted it as texture: the cloak drew ghost copies and colour fringes beside it. On test
# patterns (mean map, 1/255): a 10-px lattice 23 -> 1.0, a lone edge 1.1 -> 0, i.i.d. noise of
# std 30 16 -> 14, 4-px blocks of it 11 -> 5.9.
TEXTURE_WINDOW = 5
EROSION = 9
# The largest change a texture hides, as a share of its local std (above FLAT_TEXTURE): contrast
# masking raises the threshold about in proportion to the masker's contrast, and a change about
# as large as the texture itself is where it starts to show. The map is scaled to the PSNR
# floor's RMS only up to this gain: on a picture with little texture (a drawn sunrise, a photo
# of a clear sky) the scale grew without bound, and a residue of a tenth of a level of texture
# along a soft ray got the largest change, drawn as jagged streaks. The shared Van Goghs need a
# gain of 0.35-1.55 to reach the floor; pictures that need more keep a higher PSNR instead.
MAX_TEXTURE_GAIN = 1.0


def texture_map(image: torch.Tensor, window: int = TEXTURE_WINDOW) -> torch.Tensor:
    """Local standard deviation of luminance (B×1×H×W), eroded: near 0 on flat colour, on smooth
    gradients and along isolated edges, high in brushwork, foliage and fur."""
    grey = rgb_to_grayscale(image)
    mean = box_blur(grey, (window, window), border_type="reflect")
    var = box_blur(grey * grey, (window, window), border_type="reflect") - mean * mean
    # Flat colour computes to a tiny non-zero std (float residue of E[x²] - E[x]²); it must not
    # count as texture however the map is scaled.
    std = (var.clamp_min(0).sqrt() - FLAT_TEXTURE).clamp_min(0)
    std = gaussian_blur2d(std, (5, 5), (1.5, 1.5), border_type="reflect")
    return -F.max_pool2d(-std, kernel_size=EROSION, stride=1, padding=EROSION // 2)


def budget_map(image: torch.Tensor, budget: Budget, masking: float = 0.0) -> torch.Tensor:
    """eps(p) = clamp(max(λ·texture, masking·texture), flat, eps_max), λ chosen so that the map
    without masking has the floor's RMS with headroom.

    ``masking``: a change of up to this share of the local luminance std is hidden by the texture
    itself, so strong brushwork may take the largest change whatever the rest of the image holds.
    Flat colour never gets more than ``flat_fraction`` of the largest change.
    """
    lo_eps = budget.eps_max * budget.flat_fraction
    if budget.eps_max <= 0:
        return torch.zeros_like(image[:, :1])
    texture = texture_map(image)
    eps = _scaled_to_floor(texture, budget, lo_eps)
    if masking > 0:
        eps = torch.maximum(eps, (masking * texture).clamp(max=budget.eps_max))
    return eps


def _scaled_to_floor(texture: torch.Tensor, budget: Budget, lo_eps: float) -> torch.Tensor:
    """λ·texture clamped to [lo_eps, eps_max], λ the smallest that reaches the floor's RMS (with
    headroom), and at most ``MAX_TEXTURE_GAIN``."""
    target = min(budget.rms * MAP_HEADROOM, budget.eps_max)

    def rms(scale: float) -> float:
        eps = (scale * texture).clamp(lo_eps, budget.eps_max)
        return float(eps.pow(2).mean().sqrt())

    if rms(MAX_TEXTURE_GAIN) <= target:  # too little texture to hide the floor's change
        return (MAX_TEXTURE_GAIN * texture).clamp(lo_eps, budget.eps_max)
    lo, hi = 0.0, MAX_TEXTURE_GAIN
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rms(mid) < target else (lo, mid)
    return (lo * texture).clamp(lo_eps, budget.eps_max)
