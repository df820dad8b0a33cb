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

    Summed from shifted slices in place, one plane at a time: twice as fast on a CPU as a
    depthwise convolution, and a 2 MP tile's temporaries stay near 10 MB a plane."""
    kernel = _kernel()
    height, width = planes.shape[-2:]
    out = torch.empty_like(planes)
    for channel in range(planes.shape[1]):
        plane = planes[:, channel]
        tall = torch.cat([plane[..., :RADIUS, :].flip(-2), plane, plane[..., -RADIUS:, :].flip(-2)], dim=-2)
        columns = tall[..., :height, :] * kernel[0]
        for offset, weight in enumerate(kernel[1:], 1):
            columns.add_(tall[..., offset : offset + height, :], alpha=weight)
        del tall
        wide = F.pad(columns, (RADIUS, RADIUS))
        del columns
        target = out[:, channel]
        torch.mul(wide[..., :width], kernel[0], out=target)
        for offset, weight in enumerate(kernel[1:], 1):
            target.add_(wide[..., offset : offset + width], alpha=weight)
    return out


def _norms(error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per plane: the mean and the 4-norm mean of an error map (1×3×H×W)."""
    return error.mean((0, 2, 3)), error.square().square_().mean((0, 2, 3)).pow(0.25)


def _halved(linear: torch.Tensor) -> torch.Tensor:
    """The next scale: 2×2 means (a last odd row or column averaged alone, as the package does)."""
    return F.avg_pool2d(linear, 2, ceil_mode=True)


class _Scale:
    """The original's half of one scale: its XYB planes, their local means, variances and the
    edge measure's denominator."""

    def __init__(self, linear: torch.Tensor) -> None:
        self.xyb = _xyb(linear)
        self.mean = _blur(self.xyb)
        self.variance = _blur(self.xyb * self.xyb).sub_(self.mean * self.mean)
        self.edge = (self.xyb - self.mean).abs_().add_(1)

    def terms(self, linear: torch.Tensor) -> torch.Tensor:
        """3×6 for a test picture's scale: per plane, SSIM's mean and 4-norm, artefacts' and lost
        detail's the same."""
        second = _xyb(linear)
        mean = _blur(second)
        covariance = _blur(self.xyb * second).sub_(self.mean * mean).mul_(2).add_(C2)
        spread = _blur(second * second).sub_(mean * mean).add_(self.variance).add_(C2)
        covariance.div_(spread)  # the structure term
        del spread
        ssim = (self.mean - mean).square_().neg_().add_(1).mul_(covariance).neg_().add_(1).clamp_min_(0)
        del covariance
        edges = (second - mean).abs_().add_(1).div_(self.edge).sub_(1)
        terms = [*_norms(ssim), *_norms(edges.clamp_min(0)), *_norms(edges.neg_().clamp_min_(0))]
        return torch.stack(terms, dim=1)


class Reference:
    """One original, scored against many candidates: its half of the work is done once."""

    def __init__(self, pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        """``pixels``: 1×3×H×W sRGB in [0, 1], as 8-bit samples."""
        self.dtype = dtype
        self.scales: list[_Scale] = []
        with torch.no_grad():
            linear = _linear(pixels.to(dtype))
            while len(self.scales) < SCALES and min(linear.shape[-2:]) >= 8:
                self.scales.append(_Scale(linear))
                linear = _halved(linear)

    def score(self, test: torch.Tensor) -> float:
        """SSIMULACRA2 (100 = identical) of ``test`` (like the reference) against the reference."""
        with torch.no_grad():
            linear = _linear(test.to(self.dtype))
            per_scale = []
            for scale in self.scales:
                per_scale.append(scale.terms(linear))
                linear = _halved(linear)
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
