"""The held-out latent judge's network: a small plain CNN, deliberately unlike TAEF2.

TAEF2 (``engine/encoders/taef2_net.py``) down-samples 8× with three stride-2 stages of 64-wide
residual blocks, a pooled global branch and a final stage of 3 blocks. The judge down-samples 16×
with four stride-2 stages of plain conv + batch-norm + ReLU pairs that widen from 32 to 96 channels, no
residuals, no global pooling, so what moves its latents is not simply what moves TAEF2's.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (32, 48, 64, 96)  # one per stride-2 stage: 16x down-sampling
LATENT_CHANNELS = 32  # TAEF2's latent channels, pooled 2x2 onto the judge's grid
DOWNSAMPLING = 2 ** len(WIDTHS)


class Centred(nn.Module):
    """Inputs in [0, 1] shifted to [-0.5, 0.5]: plain ReLU stacks train faster on centred input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 0.5


def build_judge() -> nn.Sequential:
    """Image in [0, 1] (B×3×H×W) → latent B×32×ceil(H/16)×ceil(W/16)."""
    layers: list[nn.Module] = [Centred()]
    n_in = 3
    for width in WIDTHS:
        layers += [
            nn.Conv2d(n_in, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        n_in = width
    layers.append(nn.Conv2d(n_in, LATENT_CHANNELS, 1))
    return nn.Sequential(*layers)
