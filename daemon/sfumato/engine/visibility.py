"""The eye in the loop: ColorVideoVDP decides where the cloak shows, and takes it back there.

PSNR and SSIM bound the change's energy and structure, not what a person sees: a change that is
invisible in brushwork shows as blotches in a clear sky and as fringes along a clean edge at the
same PSNR. ColorVideoVDP (Mantiuk et al., SIGGRAPH 2024) models contrast sensitivity by spatial
frequency and colour, contrast masking and the display, and scores in just-objectionable
differences (JOD, 10 = no visible difference). SSIMULACRA2 (the JPEG XL project's metric) is
stricter on fine grain over smooth photo backgrounds, which cvvdp forgives on a 4K display. The
search keeps each cloak at or above its level's floor on both the same way it keeps an SSIM
floor: local water-filling, taking the change back furthest where cvvdp says it shows most.

The display is a 4K monitor at a normal desk distance (cvvdp's ``standard_4k``): a picture is
judged at 100 %, pixel for pixel, which is how an artist inspects a posted file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

DISPLAY = "standard_4k"
# cvvdp's pyramid needs a few levels; smaller pictures are judged by the budget map alone.
MIN_SIDE = 64
# Smoothing (pixels) of the local visibility map before it decides the take-back: a patch about
# the size of a blotch that shows, so the take-back itself draws no sharp outline.
MAP_SIGMA = 3.0
# The written pixels are rounded to 8 bits after the hold; this much above the floor keeps the
# rounded image on it (rounding moved JOD by up to 0.02 in the visibility bench).
ROUNDING_MARGIN = 0.05
# The same for SSIMULACRA2, whose 100-point scale moves more with rounding.
SSIMULACRA2_MARGIN = 1.0
# Large pictures are judged in tiles of at most this many pixels at full resolution, the worst
# tile counting (what a person looking at each part at 1:1 sees; sfumato check does the same).
TILE_PIXELS = 2**21  # 2 MP: 1448×1448 tiles at most
# A picture larger than the working copy keeps its SSIMULACRA2 floor at full size, scored on one
# tile of this many pixels (0.5 MP: about a second a score on a CPU). The tile is where the change
# shows most, and a smaller one is stricter: it averages in less of the picture where it hides.
FULL_SIZE_TILE_PIXELS = 2**19


@functools.lru_cache(maxsize=8)
def _metric(device_type: str, heatmap: bool, ppd_scale: float):
    """cvvdp for pictures shown at ``ppd_scale`` of their pixels per display pixel.

    The search works on a copy at most ``work_side`` across and the cloak is upsampled onto the
    full picture: a working pixel covers 1 / scale display pixels, so the copy is judged on a
    display with that many fewer pixels per degree, and its blotches are seen at the size they
    will have in the written file.
    """
    # Importing cvvdp loads torch's C++-extension helper, which logs through torch's own handler
    # that no CUDA runtime was found: noise in a CLI's output on every CPU machine.
    extension_log = logging.getLogger("torch.utils.cpp_extension")
    level = extension_log.level
    extension_log.setLevel(logging.ERROR)
    try:
        return _load_metric(device_type, heatmap, ppd_scale)
    finally:
        extension_log.setLevel(level)


def _load_metric(device_type: str, heatmap: bool, ppd_scale: float):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import pycvvdp
        from pycvvdp.display_model import vvdp_display_geometry

        standard = vvdp_display_geometry.load(DISPLAY, [])
        geometry = vvdp_display_geometry(standard.resolution, ppd=standard.get_ppd() * ppd_scale)
        return pycvvdp.cvvdp(
            display_name=DISPLAY,
            display_geometry=geometry,
            heatmap="raw" if heatmap else None,
            quiet=True,
            device=torch.device(device_type),
        )


def _as_video(image: torch.Tensor) -> torch.Tensor:
    """1×3×H×W in [0, 1] as cvvdp's B×C×F×H×W float32."""
    return image.detach().float().clamp(0, 1)[:, :, None]


def judgeable(image: torch.Tensor) -> bool:
    return min(image.shape[-2:]) >= MIN_SIDE


def jod(reference: torch.Tensor, test: torch.Tensor, scale: float = 1.0) -> float:
    """The JOD of ``test`` against ``reference`` (both 1×3×H×W in [0, 1]); ``scale``: working
    pixels per pixel of the picture as written (below 1 for a reduced working copy)."""
    with torch.no_grad():
        metric = _metric(reference.device.type, False, round(scale, 4))
        score, _ = metric.predict(_as_video(test), _as_video(reference))
    return float(score)


def visibility_map(
    reference: torch.Tensor, test: torch.Tensor, scale: float = 1.0
) -> tuple[float, torch.Tensor]:
    """The JOD and a 1×1×H×W map of where the difference shows (0 = nowhere, 1 = plainly)."""
    with torch.no_grad():
        metric = _metric(reference.device.type, True, round(scale, 4))
        score, stats = metric.predict(_as_video(test), _as_video(reference))
    local = stats["heatmap"][:, :, 0].to(reference.device, torch.float32).clamp(0, 1)
    return float(score), local


def _uint8(image: torch.Tensor) -> np.ndarray:
    """1×3×H×W in [0, 1] as the 8-bit H×W×3 samples a screen shows."""
    return _uint8_array(image.detach()[0].permute(1, 2, 0).float().cpu().numpy())


def _uint8_array(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 in [0, 1] as the 8-bit samples a screen shows."""
    return np.round(np.clip(pixels[..., :3], 0, 1) * 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=0)
    buffer.seek(0)
    return buffer


def ssimulacra2_score(reference: np.ndarray, test: np.ndarray) -> float:
    """SSIMULACRA2 (100 = identical) of 8-bit H×W×3 pixels; the package reads files, so it is
    given lossless PNGs in memory."""
    from ssimulacra2 import compute_ssimulacra2

    return float(compute_ssimulacra2(_png(reference), _png(test)))


def tiles(height: int, width: int, most: int = TILE_PIXELS) -> list[tuple[slice, slice]]:
    """Equal tiles of at most ``most`` pixels covering the image (one for a small image)."""
    count = math.ceil(height * width / most)
    rows = max(1, round(math.sqrt(count * height / width)))
    cols = math.ceil(count / rows)
    while math.ceil(height / rows) * math.ceil(width / cols) > most:
        rows, cols = (rows + 1, cols) if height / rows >= width / cols else (rows, cols + 1)
    ys = [int(y) for y in np.linspace(0, height, rows + 1).round()]
    xs = [int(x) for x in np.linspace(0, width, cols + 1).round()]
    return [(slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])) for i in range(rows) for j in range(cols)]


def worst_tile(
    size: tuple[int, int], work: torch.Tensor, delta: torch.Tensor, most: int = FULL_SIZE_TILE_PIXELS
) -> tuple[slice, slice]:
    """The full-size tile of at most ``most`` pixels whose part of the working copy scores the
    lowest SSIMULACRA2 with ``delta``: where the change shows most, found at working size."""
    height, width = size
    sy, sx = work.shape[-2] / height, work.shape[-1] / width
    before, after = _uint8(work), _uint8((work + delta).clamp(0, 1))

    def on_work(part: slice, factor: float) -> slice:  # at least 8 px: SSIMULACRA2's smallest
        start = int(part.start * factor)
        return slice(start, max(start + 8, round(part.stop * factor)))

    def score(tile: tuple[slice, slice]) -> float:
        ys, xs = on_work(tile[0], sy), on_work(tile[1], sx)
        return ssimulacra2_score(before[ys, xs], after[ys, xs])

    candidates = tiles(height, width, most)
    return candidates[0] if len(candidates) == 1 else min(candidates, key=score)


def full_size_ssimulacra2(
    pixels: np.ndarray,
    work: torch.Tensor,
    delta: torch.Tensor,
    render: Callable[[torch.Tensor, slice], np.ndarray],
) -> Callable[[torch.Tensor], float]:
    """SSIMULACRA2 of the written picture, for a δ found on a smaller working copy.

    Upsampled, the change grows coarser against the picture's own detail, and SSIMULACRA2 (unlike
    cvvdp, which is told the scale) sees the file pixel for pixel: the working copy of a 4 MP
    picture scored 61 where the file scored 48. So a large picture is scored as written
    (``render(δ, rows)``: those rows of the output, H×W×3 in [0, 1], rounded as the file will be),
    on the full-size tile where the working copy shows the change most (one tile keeps each
    score of the hold at about a second).
    """
    rows, cols = worst_tile(pixels.shape[:2], work, delta)
    reference = _uint8_array(pixels[rows, cols])
    return lambda candidate: ssimulacra2_score(reference, _uint8_array(render(candidate, rows)[:, cols]))


def hold_visibility_floor(
    image: torch.Tensor,
    delta: torch.Tensor,
    jod_floor: float,
    ssimulacra2_floor: float | None = None,
    scale: float = 1.0,
    ssimulacra2_of: Callable[[torch.Tensor], float] | None = None,
) -> torch.Tensor:
    """δ taken back where it shows most, until image + δ scores at least ``jod_floor`` JOD and,
    when given, ``ssimulacra2_floor`` SSIMULACRA2 (of the working copy, or as ``ssimulacra2_of(δ)``
    scores it: :func:`full_size_ssimulacra2` for a picture larger than its working copy).

    The local visibility map is smoothed, and δ is scaled by cap / visibility wherever the map is
    above the cap; the cap is the largest that keeps the whole picture on the floors. δ is only
    ever scaled toward zero, so it stays inside the budget map and the pixel range.

    The JOD's cap is found by bisection (cvvdp at working size is cheap), then the SSIMULACRA2's
    below it by regula falsi: SSIMULACRA2 of a full-size tile costs seconds a score, and it falls
    smoothly with the cap from 100 at no change, so a few scores land on the floor where
    bisection took nine.
    """
    if not judgeable(image):
        return delta
    score, local = visibility_map(image, (image + delta).clamp(0, 1), scale)
    size = 2 * math.ceil(3 * MAP_SIGMA) + 1
    local = gaussian_blur2d(local, (size, size), (MAP_SIGMA, MAP_SIGMA), border_type="reflect")
    local = local.clamp_min(1e-6)

    def capped(cap: float) -> torch.Tensor:
        return delta * (cap / local).clamp(max=1.0)

    jod_target = jod_floor + ROUNDING_MARGIN
    cap = float(local.max())  # at this cap δ is whole
    if score < jod_target:

        def on_jod_floor(c: float) -> bool:
            return jod(image, (image + capped(c)).clamp(0, 1), scale) >= jod_target

        cap = _largest_passing(on_jod_floor, cap)
    if ssimulacra2_floor is None:
        return capped(cap)
    if ssimulacra2_of is None:
        reference = _uint8(image)

        def ssimulacra2_of(candidate: torch.Tensor) -> float:
            return ssimulacra2_score(reference, _uint8((image + candidate).clamp(0, 1)))

    target = ssimulacra2_floor + SSIMULACRA2_MARGIN
    found = _largest_scoring(
        lambda c: ssimulacra2_of(capped(c)), target, cap, lambda c: float(capped(c).pow(2).mean())
    )
    return capped(found)


BISECTION_STEPS = 9
# Regula falsi for the SSIMULACRA2 cap: at most this many scores after the first, and done once a
# passing score is within the tolerance of the target.
SECANT_STEPS = 4
SECANT_TOLERANCE = 1.0


def _largest_passing(passes: Callable[[float], bool], hi: float) -> float:
    """The largest cap in [0, hi] that passes (the lower end of a bisection: it always passes)."""
    lo = 0.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return lo


def _largest_scoring(
    score_of: Callable[[float], float], target: float, hi: float, energy_of: Callable[[float], float]
) -> float:
    """The largest cap in [0, hi] whose score is at least ``target``, for a score that falls from
    100 at cap 0 as the change grows: Illinois regula falsi on the change's energy (cheap to
    compute for any cap), against which the score falls about linearly, where against the cap
    itself it falls steeply and then flattens. Returns a cap that scored on target, or 0."""
    high_score = score_of(hi)
    if high_score >= target:
        return hi
    lo, low_score, side = 0.0, 100.0, 0
    low_energy, high_energy = energy_of(lo), energy_of(hi)
    for _ in range(SECANT_STEPS):
        aim = high_energy - (high_score - target) * (high_energy - low_energy) / (high_score - low_score)
        margin = 0.05 * (high_energy - low_energy)  # never stall at an end
        aim = min(max(aim, low_energy + margin), high_energy - margin)
        mid = _cap_for(energy_of, aim, lo, hi)
        value = score_of(mid)
        if value >= target:
            lo, low_score, low_energy = mid, value, energy_of(mid)
            if value - target <= SECANT_TOLERANCE:
                break
            if side == 1:  # the same end moved twice: halve the other's weight (Illinois)
                high_score = target + (high_score - target) / 2
            side = 1
        else:
            hi, high_score, high_energy = mid, value, energy_of(mid)
            if side == -1:
                low_score = target + (low_score - target) / 2
            side = -1
    return lo


def _cap_for(energy_of: Callable[[float], float], energy: float, lo: float, hi: float) -> float:
    """The cap in [lo, hi] whose change has ``energy`` (it grows with the cap)."""
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if energy_of(mid) < energy else (lo, mid)
    return (lo + hi) / 2
