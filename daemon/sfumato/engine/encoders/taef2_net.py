"""The TAEF2 network (madebyollin's tiny autoencoder for FLUX.2), built from its description.

Module order inside each ``nn.Sequential`` is what the published state dicts' keys
(``0.weight``, ``11.pool.1.bias``...) index, so strict loading checks the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTH = 64
LATENT_CHANNELS = 32
STAGES = 3  # stride-2 steps: 8x down-sampling


def conv3x3(n_in: int, n_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class PooledBranch(nn.Sequential):
    """Group statistics over the whole map give the lowest-resolution blocks image-wide context."""

    def __init__(self, width: int) -> None:
        super().__init__(
            nn.Conv2d(width, 4 * width, 1, bias=False),
            nn.GroupNorm(4, 4 * width),
            nn.ReLU(),
            nn.Conv2d(4 * width, width, 1, bias=False),
        )


class ResidualBlock(nn.Module):
    """Three 3x3 convs on a residual path; an optional pooled branch is added to the input first."""

    def __init__(self, n_in: int, n_out: int, *, pooled: bool = False) -> None:
        super().__init__()
        self.pool = PooledBranch(n_in) if pooled else None
        self.conv = nn.Sequential(
            conv3x3(n_in, n_out), nn.ReLU(), conv3x3(n_out, n_out), nn.ReLU(), conv3x3(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + self.skip(x))


class SoftClamp(nn.Module):
    """Squash latents smoothly into (-3, 3), the range the decoder was trained on."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z / 3) * 3


def _stage_blocks(*, pooled: bool) -> list[nn.Module]:
    return [ResidualBlock(WIDTH, WIDTH, pooled=pooled) for _ in range(3)]


def build_encoder() -> nn.Sequential:
    """Image in [0, 1] (B×3×H×W) → latent B×32×ceil(H/8)×ceil(W/8)."""
    layers: list[nn.Module] = [conv3x3(3, WIDTH), ResidualBlock(WIDTH, WIDTH)]
    for stage in range(STAGES):
        layers.append(conv3x3(WIDTH, WIDTH, stride=2, bias=False))
        layers += _stage_blocks(pooled=stage == STAGES - 1)
    layers.append(conv3x3(WIDTH, LATENT_CHANNELS))
    return nn.Sequential(*layers)


def build_decoder() -> nn.Sequential:
    """Latent B×32×h×w → image B×3×8h×8w, roughly in [0, 1] (not clamped)."""
    layers: list[nn.Module] = [SoftClamp(), conv3x3(LATENT_CHANNELS, WIDTH), nn.ReLU()]
    for stage in range(STAGES):
        layers += _stage_blocks(pooled=stage == 0)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(WIDTH, WIDTH, bias=False)]
    layers += [ResidualBlock(WIDTH, WIDTH), conv3x3(WIDTH, 3)]
    return nn.Sequential(*layers)
