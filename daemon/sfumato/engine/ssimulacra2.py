"""SSIMULACRA2 in PyTorch: the same score as the ``ssimulacra2`` package, several times faster.

The package (the judge of ``sfumato check`` and the benches) is NumPy in double precision and
takes about five seconds for a 2 MP tile on a CPU; the hold scores every full-size tile of a
large picture several times, which only pays at a fraction of that. This follows the package's
definition step by step (XYB, six scales of SSIM and edge maps, the same pooling and weights,
read from the package itself so there is one table of them) and agrees with it to a few
hundredths of a point (``tests/test_ssimulacra2.py``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

SCALES = 6
SIGMA = 1.5
RADIUS = 5  # the package's Gaussian: SciPy's, truncated at 3.33 σ
C2 = 0.0009
# Opsin absorbance of JPEG XL's XYB (rows: the three cone responses mixed from linear RGB).
OPSIN = (
    (0.30, 1 - 0.30 - 0.078, 0.078),
    (0.23, 1 - 0.23 - 0.078, 0.078),
    (0.24342268924547819, 0.20476744424496821, 1 - 0.24342268924547819 - 0.20476744424496821),
)
OPSIN_BIAS = 0.0037930732552754493


@functools.cache
def _weights() -> tuple[float, ...]:
    from ssimulacra2.ssimulacra2 import weights

    return tuple(float(w) for w in weights)


def _opsin(dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(OPSIN, dtype=dtype)


def _linear(srgb: torch.Tensor) -> torch.Tensor:
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _xyb(linear: torch.Tensor) -> torch.Tensor:
    """Linear RGB (1×3×H×W) as SSIMULACRA2's positive XYB planes."""
    mixed = torch.einsum("ij,bjhw->bihw", _opsin(linear.dtype), linear) + OPSIN_BIAS
    cone = torch.pow(mixed.clamp_min(0), 1 / 3) - OPSIN_BIAS ** (1 / 3)
    x = (cone[:, 0] - cone[:, 1]) / 2
    y = (cone[:, 0] + cone[:, 1]) / 2
    return torch.stack([x * 14 + 0.42, y + 0.01, cone[:, 2] - y + 0.55], dim=1)


@functools.cache
def _kernel() -> tuple[float, ...]:
    offsets = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / SIGMA) ** 2)
    return tuple(float(k) for k in kernel / kernel.sum())


def _blur(planes: torch.Tensor) -> torch.Tensor:
    """The package's blur: Gaussian σ 1.5, mirrored (edge pixel repeated) beyond the top and
    bottom, zeros beyond the left and right edges (the package blurs its planes transposed).

    Summed from shifted slices in place: twice as fast on a CPU as a depthwise convolution."""
    kernel = _kernel()
    height, width = planes.shape[-2:]
    tall = torch.cat([planes[..., :RADIUS, :].flip(-2), planes, planes[..., -RADIUS:, :].flip(-2)], dim=-2)
    columns = tall[..., :height, :] * kernel[0]
    for offset, weight in enumerate(kernel[1:], 1):
        columns.add_(tall[..., offset : offset + height, :], alpha=weight)
    wide = F.pad(columns, (RADIUS, RADIUS))
    out = wide[..., :width] * kernel[0]
    for offset, weight in enumerate(kernel[1:], 1):
        out.add_(wide[..., offset : offset + width], alpha=weight)
    return out


def _norms(error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per plane: the mean and the 4-norm mean of an error map (1×3×H×W)."""
    return error.mean((0, 2, 3)), error.pow(4).mean((0, 2, 3)).pow(0.25)


def _scale_terms(
    first: torch.Tensor, mu1: torch.Tensor, s11: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """3×6: per plane, SSIM's mean and 4-norm, artefacts' and lost detail's the same."""
    mu2, s22, s12 = _blur(torch.cat([second, second * second, first * second], dim=1)).split(3, dim=1)
    structure = (2 * (s12 - mu1 * mu2) + C2) / ((s11 - mu1 * mu1) + (s22 - mu2 * mu2) + C2)
    ssim = (1 - (1 - (mu1 - mu2) ** 2) * structure).clamp_min(0)
    edges = (1 + (second - mu2).abs()) / (1 + (first - mu1).abs()) - 1
    terms = [*_norms(ssim), *_norms(edges.clamp_min(0)), *_norms((-edges).clamp_min(0))]
    return torch.stack(terms, dim=1)


def _pyramid(srgb: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """Linear RGB at each of SSIMULACRA2's scales (halved by 2×2 means, while at least 8 px)."""
    levels = [_linear(srgb.to(dtype))]
    while len(levels) < SCALES and min(levels[-1].shape[-2:]) >= 8:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return [level for level in levels if min(level.shape[-2:]) >= 8]


class Reference:
    """One original, scored against many candidates: its half of the work is done once."""

    def __init__(self, pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        """``pixels``: 1×3×H×W sRGB in [0, 1], as 8-bit samples."""
        self.dtype = dtype
        self.scales = []
        with torch.no_grad():
            for level in _pyramid(pixels, dtype):
                xyb = _xyb(level)
                mu, square = _blur(torch.cat([xyb, xyb * xyb], dim=1)).split(3, dim=1)
                self.scales.append((xyb, mu, square))

    def score(self, test: torch.Tensor) -> float:
        """SSIMULACRA2 (100 = identical) of ``test`` (like the reference) against the reference."""
        with torch.no_grad():
            levels = _pyramid(test, self.dtype)
            per_scale = [
                _scale_terms(first, mu, square, _xyb(level))
                for (first, mu, square), level in zip(self.scales, levels, strict=True)
            ]
            # The package's order: plane, scale, norm, then SSIM / artefact / lost detail.
            ordered = torch.stack(per_scale, dim=1).view(3, len(per_scale), 3, 2)
            terms = ordered.permute(0, 1, 3, 2).reshape(-1).double().abs()
            weights = torch.tensor(_weights()[: terms.numel()], dtype=torch.float64)
            total = float((weights * terms).sum()) * 0.9562382616834844
        total = 2.326765642916932 * total - 0.020884521182843837 * total**2 + 6.248496625763138e-05 * total**3
        return 100.0 - 10.0 * total**0.6276336467831387 if total > 0 else 100.0


def ssimulacra2(reference: torch.Tensor, test: torch.Tensor, dtype: torch.dtype = torch.float32) -> float:
    """SSIMULACRA2 (100 = identical) of ``test`` against ``reference``: 1×3×H×W sRGB in [0, 1],
    as 8-bit samples (round them first to score a file)."""
    return Reference(reference, dtype).score(test)
