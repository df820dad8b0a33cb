"""Visual-change figures on full-resolution images, in row bands so memory stays bounded."""

from __future__ import annotations

import math

import numpy as np
import torch
from kornia.metrics import ssim

BAND = 128  # rows per band: SSIM's intermediate maps of a 6000-px-wide band stay near 40 MB
MARGIN = 8  # > half the SSIM window, so band edges do not bias the result


def psnr(original: np.ndarray, changed: np.ndarray) -> float:
    """PSNR in dB of two float arrays in [0, 1] (inf when identical)."""
    total, count = 0.0, 0
    for top in range(0, original.shape[0], BAND):
        a = original[top : top + BAND].astype(np.float64)
        b = changed[top : top + BAND].astype(np.float64)
        total += float(((a - b) ** 2).sum())
        count += a.size
    mse = total / max(count, 1)
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def ssim_score(original: np.ndarray, changed: np.ndarray) -> float:
    """Mean SSIM (11×11 Gaussian window, kornia) over the whole image, computed band by band."""
    h = original.shape[0]
    total, count = 0.0, 0
    for top in range(0, h, BAND):
        lo, hi = max(0, top - MARGIN), min(h, top + BAND + MARGIN)
        a = torch.from_numpy(np.ascontiguousarray(original[lo:hi])).permute(2, 0, 1)[None].float()
        b = torch.from_numpy(np.ascontiguousarray(changed[lo:hi])).permute(2, 0, 1)[None].float()
        window = min(11, a.shape[-2] | 1, a.shape[-1] | 1)
        if min(a.shape[-2:]) < 3:
            return 1.0 if np.array_equal(original, changed) else 0.0
        smap = ssim(a, b, window_size=window if window % 2 else window - 1).mean(1)[0]
        inner = smap[top - lo : top - lo + min(BAND, h - top)]
        total += float(inner.sum())
        count += inner.numel()
    return total / max(count, 1)


def max_change(original: np.ndarray, changed: np.ndarray) -> float:
    """Largest change of one channel of one pixel, in 1/255 units (band by band: no full-size copy)."""
    largest = 0.0
    for top in range(0, original.shape[0], BAND):
        a = original[top : top + BAND].astype(np.float32)  # band copies: integer samples cannot wrap
        band = np.abs(a - changed[top : top + BAND].astype(np.float32))
        largest = max(largest, float(band.max(initial=0.0)))
    return largest * 255
