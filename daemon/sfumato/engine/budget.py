"""Per-pixel budget map: spend the change where texture hides it, little on flat colour."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import box_blur, gaussian_blur2d

from sfumato.engine.levels import MAP_HEADROOM, Budget

FLAT_TEXTURE = 1 / 255  # local luminance std at or below which a region counts as flat


def texture_map(image: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Local standard deviation of luminance (B×1×H×W): near 0 on flat colour, high in brushwork."""
    grey = rgb_to_grayscale(image)
    mean = box_blur(grey, (window, window), border_type="reflect")
    var = box_blur(grey * grey, (window, window), border_type="reflect") - mean * mean
    # Flat colour computes to a tiny non-zero std (float residue of E[x²] - E[x]², about 1e-4);
    # the map's scale is large on mostly flat art and would turn that into the full budget. A
    # luminance std under one 8-bit level is flat to the eye too (smooth gradients included).
    std = (var.clamp_min(0).sqrt() - FLAT_TEXTURE).clamp_min(0)
    # A flat patch right beside an edge is still flat to the eye: take the local minimum of the
    # smoothed texture, so the budget does not bleed from edges into the sky next to them.
    std = gaussian_blur2d(std, (5, 5), (1.5, 1.5), border_type="reflect")
    return -F.max_pool2d(-std, kernel_size=5, stride=1, padding=2)


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
    target = min(budget.rms * MAP_HEADROOM, budget.eps_max)

    def rms(scale: float) -> float:
        eps = (scale * texture).clamp(lo_eps, budget.eps_max)
        return float(eps.pow(2).mean().sqrt())

    if rms(1e6) <= target:  # even full budget everywhere textured stays under the floor
        return (1e6 * texture).clamp(lo_eps, budget.eps_max)
    lo, hi = 0.0, 1.0
    while rms(hi) < target:
        hi *= 2
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rms(mid) < target else (lo, mid)
    return (lo * texture).clamp(lo_eps, budget.eps_max)
