"""What the intensity and quality names mean, in numbers.

Intensity bounds the change of one channel of one pixel (``eps_max``, in 1/255 units) and sets a
PSNR floor. The per-pixel budget map is scaled so its root-mean-square is ``MAP_HEADROOM`` times
the RMS change the floor allows; the search scales the change back onto the floor's RMS after
every step, and the written pixels are checked against the floor once more after rounding to the
output's bit depth. The floor holds by construction, and the search may spend it where the
objective gains most instead of where the map happens to allow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    eps_max: float  # largest change of one channel, in [0, 1] units
    psnr_floor: float  # dB; the budget map's RMS is 10 ** (-psnr_floor / 20)
    flat_fraction: float  # share of eps_max that flat areas may use
    jod_floor: float  # ColorVideoVDP JOD the cloak keeps (10 = no visible difference)

    @property
    def rms(self) -> float:
        return 10 ** (-self.psnr_floor / 20)

    @property
    def latent_ssim_floor(self) -> float:
        """The SSIM a cloak against a latent encoder keeps: ``LATENT_SSIM_FLOOR`` at `default`'s
        35 dB, and the same structural change per unit of change energy at the other levels."""
        return 1 - (1 - LATENT_SSIM_FLOOR) * 10 ** ((DEFAULT_PSNR_FLOOR - self.psnr_floor) / 10)


# Measured: sign steps inside the map leave δ's RMS about 0.87 of the map's (36.2 dB mean PSNR
# at a 35 dB floor); a map with this much headroom, projected back, lands on the floor.
MAP_HEADROOM = 1.25
# With a latent encoder in the ensemble, strong brushwork takes more of the change: a change of up
# to half the local luminance std is hidden by the texture (8/255 from a std of 16/255 on), while
# smooth skies keep the texture-scaled budget, where a white-box latent leaves visible block edges.
# With the latent's own momentum: TAEF2 shift 0.190 -> 0.242 on the five olive groves (README).
LATENT_TEXTURE_MASKING = 0.5
# The PSNR floor bounds the change's energy, not its structure. On paintings with little fine
# texture (the sunflowers) a white-box latent search spends that energy on blocky patches, which
# showed at 100 % zoom (SSIM 0.938 on twelve sunflowers); so with a latent encoder the search also
# holds SSIM at or above this at `default`, taking the change back where it shows most. On twelve
# sunflowers it leaves a faint texture at 1x against a clear grid without it (shift 0.466 -> 0.341);
# the olive groves land above it (0.98).
LATENT_SSIM_FLOOR = 0.97
DEFAULT_PSNR_FLOOR = 35.0


# name: (eps_max in 1/255, PSNR floor in dB, JOD floor). The JOD floor is what an artist sees:
# at `low` nobody tells the cloak from the original side by side on a 4K monitor at 100 %; at
# `default` a careful look finds it in at most one of twenty trials (0.5 JOD); `high` and `max`
# trade visibility for protection. For scale: JPEG 75 scores 9.86-10, Mist at ε 16 scores 7.98.
INTENSITIES: dict[str, tuple[float, float, float]] = {
    "low": (4.0, 40.0, 9.8),
    "default": (8.0, DEFAULT_PSNR_FLOOR, 9.5),
    "high": (12.0, 33.0, 9.2),
    "max": (16.0, 30.0, 8.8),
}


def _jod_floor_for(eps: float) -> float:
    """A numeric intensity keeps the JOD floor of the named levels around it (linear in eps)."""
    levels = sorted((e, j) for e, _, j in INTENSITIES.values())
    if eps <= levels[0][0]:
        return levels[0][1]
    for (e0, j0), (e1, j1) in zip(levels, levels[1:], strict=False):
        if eps <= e1:
            return j0 + (j1 - j0) * (eps - e0) / (e1 - e0)
    return levels[-1][1]


def budget_for(intensity: str | float) -> Budget:
    value = parse_intensity(intensity)
    if isinstance(value, str):
        eps, floor, jod_floor = INTENSITIES[value]
    else:
        eps = float(value)
        # Same shape as the named levels: the RMS change may reach half the largest change.
        floor = 20 * math.log10(2 * 255 / eps) if eps > 0 else math.inf
        jod_floor = _jod_floor_for(eps)
    return Budget(
        eps_max=eps / 255,
        psnr_floor=floor,
        flat_fraction=0.2,
        jod_floor=jod_floor,
    )


@dataclass(frozen=True)
class Search:
    steps: int
    views: int  # random views per step
    work_side: int  # the perturbation is searched at most at this size, then upsampled


QUALITIES: dict[str, Search] = {
    "fast": Search(steps=16, views=2, work_side=512),
    "default": Search(steps=60, views=3, work_side=640),
    "slow": Search(steps=160, views=4, work_side=1024),
}


def search_for(quality: str, steps: int | None = None) -> Search:
    preset = QUALITIES[parse_quality(quality)]
    if steps is not None:
        return Search(steps=max(1, int(steps)), views=preset.views, work_side=preset.work_side)
    return preset


# The names a user may give are the tables' own keys: one list, here, read by the CLI and config.
INTENSITY_LEVELS: tuple[str, ...] = tuple(INTENSITIES)
QUALITY_LEVELS: tuple[str, ...] = tuple(QUALITIES)
DEFAULT_INTENSITY = "default"
DEFAULT_QUALITY = "default"


def parse_intensity(value: str | float | int) -> str | float:
    """A level name or a number of 1/255 steps (0-64); raises ValueError with a user-facing reason."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip().lower()
        if text in INTENSITY_LEVELS:
            return text
        try:
            number = float(text)
        except ValueError:
            raise ValueError(
                f"intensity must be one of {', '.join(INTENSITY_LEVELS)} or a number of 1/255 "
                f"steps, not {value!r}"
            ) from None
    if not 0 <= number <= 64:
        raise ValueError(f"intensity {number:g} is out of range: use 0 to 64 (1/255 units)")
    return number


def parse_quality(value: str) -> str:
    text = str(value).strip().lower()
    if text not in QUALITY_LEVELS:
        raise ValueError(f"quality must be one of {', '.join(QUALITY_LEVELS)}, not {value!r}")
    return text
