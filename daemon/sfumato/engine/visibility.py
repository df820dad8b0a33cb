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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from sfumato.engine.ssimulacra2 import Reference

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
# A tile's JOD is judged on its written pixels reduced to about this many (2×2 ... means, cvvdp
# told the scale): on a 24 MP photo's 2 MP tiles, within 0.02 JOD of full size (never above it),
# at a tenth of the time.
JOD_TILE_PIXELS = 2**17
# A picture held tile by tile gets one cap per tile; where two tiles meet, the lower cap reaches
# this many working pixels into the other tile and the two blend over it, so no seam shows.
SEAM_RADIUS = 6


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


def _as_8_bit(image: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] rounded to the 8-bit samples a screen shows."""
    return torch.round(image.detach().float().clamp(0, 1) * 255) / 255


def _uint8_array(pixels: np.ndarray) -> np.ndarray:
    """H×W×3 in [0, 1] as the 8-bit samples a screen shows."""
    return np.round(np.clip(pixels[..., :3], 0, 1) * 255).astype(np.uint8)


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    """8-bit H×W×3 samples as 1×3×H×W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float() / 255


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


@dataclass(frozen=True)
class WrittenPicture:
    """A picture larger than the working copy its δ was found on, as the file will hold it.

    Upsampled, the change grows coarser against the picture's own detail, and SSIMULACRA2 (unlike
    cvvdp, which is told the scale) sees the file pixel for pixel: the working copy of a 24 MP
    picture can score 60 where the file's worst tile scores 45. So such a picture keeps its
    SSIMULACRA2 floor on the written pixels, tile by tile, as ``sfumato check`` judges it.
    """

    pixels: np.ndarray  # H×W×3 in [0, 1]
    render: Callable[[torch.Tensor, slice, slice], np.ndarray]  # (δ, rows, cols): that part as written


def hold_visibility_floor(
    image: torch.Tensor,
    delta: torch.Tensor,
    jod_floor: float,
    ssimulacra2_floor: float | None = None,
    scale: float = 1.0,
    written: WrittenPicture | None = None,
) -> torch.Tensor:
    """δ taken back where it shows most, until image + δ scores at least ``jod_floor`` JOD and,
    when given, ``ssimulacra2_floor`` SSIMULACRA2: on the working copy, and for a ``written``
    picture larger than it also in each full-size tile of the file (both floors, as written).

    The local visibility map is smoothed, and δ is scaled by cap / visibility wherever the map is
    above the cap; the cap is the largest that keeps the picture on the floors (for a written
    picture, each tile has its own, so a sky in one corner does not cost the brushwork elsewhere
    its change). δ is only ever scaled toward zero, so it stays inside the budget map and the
    pixel range.

    The JOD's cap is found by bisection (cvvdp at working size is cheap), then the SSIMULACRA2's
    below it by a secant on the change's energy (:func:`_largest_scoring`): SSIMULACRA2 of a
    full-size tile costs about a second a score, and a few scores land on the floor where
    bisection took nine.
    """
    if not judgeable(image):
        return delta
    score, local = visibility_map(image, (image + delta).clamp(0, 1), scale)
    size = 2 * math.ceil(3 * MAP_SIGMA) + 1
    local = gaussian_blur2d(local, (size, size), (MAP_SIGMA, MAP_SIGMA), border_type="reflect")
    local = local.clamp_min(1e-6)

    def capped(cap: float | torch.Tensor) -> torch.Tensor:
        return delta * (cap / local).clamp(max=1.0)

    jod_target = jod_floor + ROUNDING_MARGIN
    cap = float(local.max())  # at this cap δ is whole
    if score < jod_target:

        def on_jod_floor(c: float) -> bool:
            return jod(image, (image + capped(c)).clamp(0, 1), scale) >= jod_target

        cap = _largest_passing(on_jod_floor, cap)
    if ssimulacra2_floor is None:
        return capped(cap)
    target = ssimulacra2_floor + SSIMULACRA2_MARGIN
    if written is not None:
        return capped(_tile_caps(written, local, capped, cap, Floors(jod_target, target)))
    reference = Reference(_as_8_bit(image))

    def on_work(candidate: torch.Tensor) -> float:
        return reference.score(_as_8_bit(image + candidate))

    def energy(c: float) -> float:
        return float(capped(c).pow(2).mean())

    return capped(_largest_scoring(lambda c: on_work(capped(c)), target, cap, energy))


@dataclass(frozen=True)
class Floors:
    """What a tile must score, margins included."""

    jod: float
    ssimulacra2: float


def _tile_caps(
    written: WrittenPicture,
    local: torch.Tensor,
    capped: Callable[[float], torch.Tensor],
    cap: float,
    floors: Floors,
) -> torch.Tensor:
    """A map of caps over the working copy: under each full-size tile the largest cap (at most
    ``cap``) whose written pixels keep both floors there, lowered and blended where tiles meet."""
    height, width = written.pixels.shape[:2]
    caps = torch.full_like(local, cap)
    for rows, cols in tiles(height, width, TILE_PIXELS):
        box = (..., _on_work(rows, local.shape[-2] / height), _on_work(cols, local.shape[-1] / width))
        caps[box] = caps[box].clamp(max=_tile_cap(written, rows, cols, capped, cap, floors, box))
    return _seamless(caps)


def _tile_cap(
    written: WrittenPicture,
    rows: slice,
    cols: slice,
    capped: Callable[[float], torch.Tensor],
    cap: float,
    floors: Floors,
    box: tuple,
) -> float:
    """The largest cap (at most ``cap``) whose written pixels keep both floors in one tile.

    The JOD is judged here too, on the rounded pixels: the whole-picture hold judges the working
    copy before rounding, and rounding a smooth change to 8 bits draws contours in a clear sky
    (on a 24 MP photo's sky tile: 9.61 JOD unrounded, 9.41 as written). The JOD's cap comes
    first (cvvdp on the reduced tile is cheap), then SSIMULACRA2's at or below it."""
    reference = _tensor(_uint8_array(written.pixels[rows, cols]))
    factor = _jod_reduction(reference)

    @functools.lru_cache(maxsize=1)  # SSIMULACRA2's first score is often the JOD's last cap
    def rendered(c: float) -> torch.Tensor:
        return _tensor(_uint8_array(written.render(capped(c), rows, cols)))

    def energy(c: float) -> float:  # of the working copy's part under the tile
        return float(capped(c)[box].pow(2).mean())

    if factor is not None:
        small = F.avg_pool2d(reference, factor)

        def seen(c: float) -> float:
            return jod(small, F.avg_pool2d(rendered(c), factor), 1 / factor)

        cap = _largest_scoring(seen, floors.jod, cap, energy, JOD_SCALE)
    structure = Reference(reference)
    return _largest_scoring(lambda c: structure.score(rendered(c)), floors.ssimulacra2, cap, energy)


def _jod_reduction(tile: torch.Tensor) -> int | None:
    """The whole factor a tile is reduced by to judge its JOD (None: too small to judge)."""
    if not judgeable(tile):
        return None
    factor = max(1, math.floor(math.sqrt(tile.shape[-2] * tile.shape[-1] / JOD_TILE_PIXELS)))
    while factor > 1 and min(tile.shape[-2:]) // factor < MIN_SIDE:
        factor -= 1
    return factor


def _on_work(part: slice, factor: float) -> slice:
    """The working copy's rows (or columns) under a full-size tile's."""
    return slice(int(part.start * factor), max(int(part.start * factor) + 1, math.ceil(part.stop * factor)))


def _seamless(caps: torch.Tensor) -> torch.Tensor:
    """Tile caps blended across tile borders, never above any tile's own cap where it applies
    (a minimum over the seam's radius, then a blur no wider than it)."""
    width = 2 * SEAM_RADIUS + 1
    lowest = -F.max_pool2d(-caps, width, stride=1, padding=SEAM_RADIUS)
    sigma = SEAM_RADIUS / 3
    return gaussian_blur2d(lowest, (width, width), (sigma, sigma), border_type="replicate")


BISECTION_STEPS = 9


@dataclass(frozen=True)
class Scale:
    """How a score falls as the change grows, for the secant search of a cap: from ``perfect``
    at no change, its shortfall about a power of the change's energy (``exponent`` until two
    scores say better); at most ``steps`` scores after the first, and a passing score within
    ``tolerance`` of the target is close enough."""

    perfect: float
    exponent: float
    tolerance: float
    steps: int


# SSIMULACRA2 is the costly score (about a second for a 2 MP tile); cvvdp on a reduced tile is
# cheap, and its JOD is flat near the floor, so it gets more steps. Measured shortfalls on a
# 24 MP photo's tiles grew as the 0.2-0.5th power of the energy.
SSIMULACRA2_SCALE = Scale(perfect=100.0, exponent=1.0, tolerance=1.0, steps=4)
JOD_SCALE = Scale(perfect=10.0, exponent=0.4, tolerance=0.05, steps=8)


def _largest_passing(passes: Callable[[float], bool], hi: float) -> float:
    """The largest cap in [0, hi] that passes (the lower end of a bisection: it always passes)."""
    lo = 0.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return lo


def _largest_scoring(
    score_of: Callable[[float], float],
    target: float,
    hi: float,
    energy_of: Callable[[float], float],
    scale: Scale = SSIMULACRA2_SCALE,
) -> float:
    """The largest cap in [0, hi] whose score is at least ``target``, for a score that falls from
    ``scale.perfect`` at cap 0 as the change grows: a secant on the change's energy (cheap to
    compute for any cap) in log-log terms, through the last two scores, kept inside the bracket
    of the largest passing and the smallest failing cap found so far; a score that follows a
    power law lands in a step or two. Returns a cap that scored on target, or 0."""
    high_score = score_of(hi)
    if high_score >= target:
        return hi
    wanted = scale.perfect - target
    lo, low_energy = 0.0, 0.0
    high_energy = energy_of(hi)
    last = (high_energy, scale.perfect - high_score)
    before: tuple[float, float] | None = None
    for _ in range(scale.steps):
        if wanted <= 0 or high_energy <= 0:
            break
        exponent = scale.exponent
        if before is not None and min(*before, *last) > 0 and before[0] != last[0] and before[1] != last[1]:
            fitted = math.log(last[1] / before[1]) / math.log(last[0] / before[0])
            exponent = min(max(fitted, 0.1), 3.0)
        aim = last[0] * (wanted / last[1]) ** (1 / exponent)
        margin = 0.05 * (high_energy - low_energy)  # never stall at an end
        aim = min(max(aim, low_energy + margin), high_energy - margin)
        mid = _cap_for(energy_of, aim, lo, hi)
        value = score_of(mid)
        before, last = last, (energy_of(mid), scale.perfect - value)
        if value >= target:
            lo, low_energy = mid, last[0]
            if value - target <= scale.tolerance:
                break
        else:
            hi, high_energy = mid, last[0]
    return lo


def _cap_for(energy_of: Callable[[float], float], energy: float, lo: float, hi: float) -> float:
    """The cap in [lo, hi] whose change has ``energy`` (it grows with the cap)."""
    for _ in range(24):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if energy_of(mid) < energy else (lo, mid)
    return (lo + hi) / 2
