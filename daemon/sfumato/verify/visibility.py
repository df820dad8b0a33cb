"""Whether a person can see the cloak: two perceptual metrics and a phrase in words.

- **ColorVideoVDP** (``cvvdp``, Mantiuk et al. 2024) in just-objectionable-difference units
  (JOD) for the picture shown on a 4K monitor at a desk (``standard_4k``): 10 = no difference;
  one JOD less means that three quarters of people pick the original as the better of the two.
- **SSIMULACRA2** (the JPEG XL project's metric, 100 = identical): about 90 and above is
  indistinguishable at 1:1, 70 very high quality, 50 medium (JPEG quality 75 on a photo lands
  near 70-80), negative values look noisy.

The phrase takes the worse of the two ratings (see :data:`PHRASES`). Images larger than
:data:`TILE_PIXELS` are measured tile by tile, at full resolution, and the worst tile counts: it
is what a person looking at each part of the picture at 1:1 would see, and it keeps the
metrics' memory bounded (ColorVideoVDP needs about 0.7 GB per megapixel).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from sfumato.engine.visibility import DISPLAY, TILE_PIXELS, tiles
from sfumato.verify.figures import visual_change

MIN_SIDE = 8  # SSIMULACRA2 has no scale to compare below this (it says 100); ColorVideoVDP fails
# (phrase, least JOD, least SSIMULACRA2), best first: the first one both figures reach.
PHRASES: tuple[tuple[str, float, float], ...] = (
    ("no visible difference", 9.8, 80.0),
    ("barely visible side by side", 9.5, 60.0),
    ("visible side by side", 8.5, 30.0),
    ("clearly visible", -math.inf, -math.inf),
)


def phrase_for(jod: float, ssimulacra2: float) -> str:
    """The first phrase of :data:`PHRASES` whose thresholds both figures reach."""
    return next(text for text, least_jod, least_s2 in PHRASES if jod >= least_jod and ssimulacra2 >= least_s2)


@dataclass(frozen=True)
class Visibility:
    """``jod`` and ``ssimulacra2``: the worst tile's; ``tiles``: how many were measured."""

    jod: float
    ssimulacra2: float
    psnr: float | None
    ssim: float
    max_change: float
    tiles: int = 1

    @property
    def phrase(self) -> str:
        return phrase_for(self.jod, self.ssimulacra2)

    def as_report(self) -> dict:
        return {**asdict(self), "phrase": self.phrase, "display": DISPLAY}


def _uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def jod(original: np.ndarray, changed: np.ndarray, device: torch.device | None = None) -> float:
    """ColorVideoVDP's JOD for 8-bit H×W×3 pixels on a 4K monitor: the engine's own judge, the one
    its JOD floor is held with (CUDA or else the CPU)."""
    from sfumato.engine.visibility import jod as engine_jod

    device = device if device is not None and device.type == "cuda" else torch.device("cpu")

    def tensor(pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].to(device).float() / 255

    return engine_jod(tensor(original), tensor(changed))


def ssimulacra2(original: np.ndarray, changed: np.ndarray) -> float:
    """SSIMULACRA2 for 8-bit H×W×3 pixels, by the ``ssimulacra2`` package itself (the engine holds
    its floor with its own faster copy of the same score; the judge stays the reference one). The
    package reads files, so it is given lossless PNGs in memory."""
    from ssimulacra2 import compute_ssimulacra2

    return float(compute_ssimulacra2(_png(original), _png(changed)))


def _png(pixels: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=0)
    buffer.seek(0)
    return buffer


def measure_visibility(
    original: np.ndarray,
    changed: np.ndarray,
    device: torch.device | None = None,
    tile_pixels: int = TILE_PIXELS,
) -> Visibility:
    """Both metrics (and PSNR, SSIM, the largest change) for pixels H×W×3 in [0, 1], on the
    8-bit samples a screen shows; large images tile by tile, the worst tile counting."""
    if original.shape != changed.shape:
        raise ValueError(f"images differ in size: {original.shape} and {changed.shape}")
    if min(original.shape[:2]) < MIN_SIDE:
        h, w = original.shape[:2]
        raise ValueError(f"a {w}×{h} picture is too small to judge by eye (at least {MIN_SIDE} px a side)")
    figures = visual_change(original, changed)
    a, b = _uint8(original), _uint8(changed)
    jods, scores = [], []
    parts = tiles(*a.shape[:2], tile_pixels)
    for rows, cols in parts:
        ta, tb = np.ascontiguousarray(a[rows, cols]), np.ascontiguousarray(b[rows, cols])
        if np.array_equal(ta, tb):
            jods.append(10.0)
            scores.append(100.0)
            continue
        jods.append(jod(ta, tb, device))
        scores.append(ssimulacra2(ta, tb))
    return Visibility(
        jod=round(min(jods), 3),
        ssimulacra2=round(min(scores), 2),
        psnr=figures["psnr"],
        ssim=figures["ssim"],
        max_change=figures["max_change"],
        tiles=len(parts),
    )
