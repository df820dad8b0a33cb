"""How much a cloak changed the picture, in the figures a person can judge it by."""

from __future__ import annotations

import numpy as np

from sfumato.engine.metrics import max_change, psnr, ssim_score

# A channel counts as changed when it moved by at least half a step of 8-bit output.
CHANGED_AT = 0.5 / 255


def changed_share(original: np.ndarray, changed: np.ndarray) -> float:
    """Share of pixels (0-1) with at least one channel changed by an 8-bit step or more."""
    moved = np.abs(original.astype(np.float32) - changed.astype(np.float32)) >= CHANGED_AT
    return float(moved.any(axis=-1).mean())


def visual_change(original: np.ndarray, changed: np.ndarray) -> dict:
    """PSNR (dB), SSIM, largest change (1/255 units) and share of pixels changed."""
    value = psnr(original, changed)
    return {
        "psnr": round(value, 3) if np.isfinite(value) else None,
        "ssim": round(ssim_score(original, changed), 5),
        "max_change": round(max_change(original, changed), 3),
        "changed_share": round(changed_share(original, changed), 5),
    }
