"""The SSIM term of the search: dissimilarity of the cloak to the one original it is searched for.

kornia's ``ssim`` takes two free images, so every call filters the reference again and runs five
separate filters. The search asks the same question every step against the same original: its
local mean and variance are computed once here, and the cloak's three moments share one filter
call. Same window, constants and border as ``kornia.metrics.ssim`` (a test holds them equal); it
took about a sixth of each step before.

Its gradient is computed in bands of rows, each band's output with its own small graph: at a
1000-px working size one graph over the whole image held a third of a gigabyte (measured), the
largest single item of a ``slow`` search.
"""

from __future__ import annotations

import torch
from kornia.filters import filter2d_separable, get_gaussian_kernel1d

C1, C2 = 0.01**2, 0.03**2  # kornia's constants for images in [0, 1]
EPS = 1e-12
BAND_ROWS = 256


class SsimToReference:
    """``loss(image) = 1 - mean SSIM(image, reference)``, and its gradient in bands."""

    def __init__(self, reference: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> None:
        self.reference = reference.detach()
        self.kernel = get_gaussian_kernel1d(
            window_size, sigma, device=reference.device, dtype=reference.dtype
        )
        self.reach = window_size // 2  # rows of input each output row depends on, either side
        with torch.no_grad():
            self.mean = self._filter(self.reference)
            self.mean_sq = self.mean * self.mean
            self.variance = self._filter(self.reference * self.reference) - self.mean_sq

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d_separable(x, self.kernel, self.kernel, border_type="reflect")

    def _ssim_rows(self, rows: torch.Tensor, lo: int, top: int, bottom: int) -> torch.Tensor:
        """The SSIM map of output rows [top, bottom), from input rows [lo, lo + len(rows))."""
        channels = rows.shape[1]
        reference = self.reference[..., lo : lo + rows.shape[-2], :]
        moments = self._filter(torch.cat([rows, rows * rows, rows * reference], dim=1))
        mean, square, product = moments[..., top - lo : bottom - lo, :].split(channels, dim=1)
        ref_mean, ref_mean_sq = self.mean[..., top:bottom, :], self.mean_sq[..., top:bottom, :]
        mean_product = mean * ref_mean
        variance = square - mean * mean
        covariance = product - mean_product
        num = (2 * mean_product + C1) * (2 * covariance + C2)
        den = (mean * mean + ref_mean_sq + C1) * (variance + self.variance[..., top:bottom, :] + C2)
        return num / (den + EPS)

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        return 1 - self.map(image).mean()

    def map(self, image: torch.Tensor) -> torch.Tensor:
        """Local SSIM of ``image`` to the reference, per pixel and channel."""
        return self._ssim_rows(image, 0, 0, image.shape[-2])

    def gradient(self, image: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """d(weight · loss)/d image, band by band: exact, since each band's rows are filtered
        from real neighbouring rows (the reflected border only where the image ends)."""
        height = image.shape[-2]
        grad = torch.zeros_like(image)
        scale = -weight / image.numel()
        for top in range(0, height, BAND_ROWS):
            bottom = min(height, top + BAND_ROWS)
            lo, hi = max(0, top - self.reach), min(height, bottom + self.reach)
            rows = image[..., lo:hi, :].detach().requires_grad_(True)
            with torch.enable_grad():
                total = self._ssim_rows(rows, lo, top, bottom).sum() * scale
                (part,) = torch.autograd.grad(total, rows)
            grad[..., lo:hi, :] += part
        return grad
