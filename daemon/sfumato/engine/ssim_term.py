"""The SSIM term of the search: dissimilarity of the cloak to the one original it is searched for.

kornia's ``ssim`` takes two free images, so every call filters the reference again and runs five
separate filters. The search asks the same question every step against the same original: its
local mean and variance are computed once here, and the cloak's three moments share one filter
call. Same window, constants and border as ``kornia.metrics.ssim`` (a test holds them equal); it
took about a sixth of each step before.
"""

from __future__ import annotations

import torch
from kornia.filters import filter2d_separable, get_gaussian_kernel1d

C1, C2 = 0.01**2, 0.03**2  # kornia's constants for images in [0, 1]
EPS = 1e-12


class SsimToReference:
    """``loss(image) = 1 - mean SSIM(image, reference)``, differentiable in ``image``."""

    def __init__(self, reference: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> None:
        self.reference = reference.detach()
        self.kernel = get_gaussian_kernel1d(
            window_size, sigma, device=reference.device, dtype=reference.dtype
        )
        with torch.no_grad():
            self.mean = self._filter(self.reference)
            self.mean_sq = self.mean * self.mean
            self.variance = self._filter(self.reference * self.reference) - self.mean_sq

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d_separable(x, self.kernel, self.kernel, border_type="reflect")

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        channels = image.shape[1]
        moments = self._filter(torch.cat([image, image * image, image * self.reference], dim=1))
        mean, square, product = moments.split(channels, dim=1)
        mean_product = mean * self.mean
        variance = square - mean * mean
        covariance = product - mean_product
        num = (2 * mean_product + C1) * (2 * covariance + C2)
        den = (mean * mean + self.mean_sq + C1) * (variance + self.variance + C2)
        return 1 - (num / (den + EPS)).mean()
