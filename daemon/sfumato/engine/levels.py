"""What the intensity and quality names mean, in numbers.

Intensity bounds the change of one channel of one pixel (``eps_max``, in 1/255 units) and sets a
PSNR floor. The per-pixel budget map is scaled so its root-mean-square is ``MAP_HEADROOM`` times
the RMS change the floor allows; the search scales the change back onto the floor's RMS after
every step, and the written pixels are checked against the floor once more after rounding to the
output's bit depth. The floor holds by construction, and the search may spend it where the
objective gains most instead of where the map happens to allow it. After the search, the
change is taken back where it shows until the picture keeps the level's perceptual floors
(ColorVideoVDP JOD and SSIMULACRA2, :mod:`sfumato.engine.visibility`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    eps_max: float  # largest change of one channel, in [0, 1] units
    psnr_floor: float  # dB; the budget map's RMS is 10 ** (-psnr_floor / 20)
    flat_fraction: float  # share of eps_max that flat areas may use
    jod_floor: float  # ColorVideoVDP JOD the cloak keeps (10 = no visible difference)
    ssimulacra2_floor: float  # SSIMULACRA2 the cloak keeps (100 = identical)

    @property
    def rms(self) -> float:
        return 10 ** (-self.psnr_floor / 20)

    @property
    def latent_ssim_floor(self) -> float:
        """The SSIM a cloak against a latent encoder keeps: ``LATENT_SSIM_FLOOR`` at `default`'s
        35 dB, and the same structural change per unit of change energy at the other levels."""
        return 1 - (1 - LATENT_SSIM_FLOOR) * 10 ** ((DEFAULT_PSNR_FLOOR - self.psnr_floor) / 10)


# Flat colour and smooth gradients hide nothing: any change there is a new pattern on an empty
# ground. At a fifth of the largest change (±2 levels after rounding at `default`) the search's
# maze-like pattern showed over clear skies and flat fills at 100 %, though both metrics passed
# it; at a tenth (±1 level) it does not show, and the texture keeps its budget.
FLAT_FRACTION = 0.1
# Sign steps inside the map leave δ's RMS below the map's; a map with this much headroom,
# projected back onto the floor's RMS, lands on the floor instead of under it.
MAP_HEADROOM = 1.25
# With a latent encoder in the ensemble, strong brushwork takes more of the change: a change of up
# to half the local luminance std is hidden by the texture (8/255 from a std of 16/255 on), while
# smooth skies keep the texture-scaled budget, where a white-box latent leaves visible block edges.
LATENT_TEXTURE_MASKING = 0.5
# The PSNR floor bounds the change's energy, not its structure: on paintings with little fine
# texture a white-box latent search spends that energy on blocky patches that show at 100 %. So
# with a latent encoder the search also holds SSIM at or above this at `default`, taking the
# change back where it shows most.
LATENT_SSIM_FLOOR = 0.97
DEFAULT_PSNR_FLOOR = 35.0


# name: (eps_max in 1/255, PSNR floor in dB, JOD floor, SSIMULACRA2 floor). The perceptual floors
# are what an artist sees, and they decide first: at `low` nobody tells the cloak from the
# original side by side on a 4K monitor at 100 %; at `default` a careful look finds it in at most
# one of twenty trials (0.5 JOD) and the picture rates as high quality (SSIMULACRA2 60: cvvdp
# forgives fine grain on smooth photo backgrounds that SSIMULACRA2 and a close look catch);
# `high` and `max` trade visibility for protection. JPEG 75 of the same pictures rates about
# 9.8-10 JOD and SSIMULACRA2 65-80.
INTENSITIES: dict[str, tuple[float, float, float, float]] = {
    "low": (4.0, 40.0, 9.8, 75.0),
    "default": (8.0, DEFAULT_PSNR_FLOOR, 9.5, 60.0),
    "high": (12.0, 33.0, 9.2, 45.0),
    "max": (16.0, 30.0, 8.8, 30.0),
}


def _perceptual_floors_for(eps: float) -> tuple[float, float]:
    """A numeric intensity keeps the perceptual floors of the named levels around it (linear in
    eps), so a number between two names is never more visible than the louder of them."""
    levels = sorted((e, j, s) for e, _, j, s in INTENSITIES.values())
    if eps <= levels[0][0]:
        return levels[0][1], levels[0][2]
    for (e0, j0, s0), (e1, j1, s1) in zip(levels, levels[1:], strict=False):
        if eps <= e1:
            t = (eps - e0) / (e1 - e0)
            return j0 + (j1 - j0) * t, s0 + (s1 - s0) * t
    return levels[-1][1], levels[-1][2]


def budget_for(intensity: str | float) -> Budget:
    value = parse_intensity(intensity)
    if isinstance(value, str):
        eps, floor, jod_floor, s2_floor = INTENSITIES[value]
    else:
        eps = float(value)
        # Same shape as the named levels: the RMS change may reach half the largest change.
        floor = 20 * math.log10(2 * 255 / eps) if eps > 0 else math.inf
        jod_floor, s2_floor = _perceptual_floors_for(eps)
    return Budget(
        eps_max=eps / 255,
        psnr_floor=floor,
        flat_fraction=FLAT_FRACTION,
        jod_floor=jod_floor,
        ssimulacra2_floor=s2_floor,
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
        return replace(preset, steps=max(1, int(steps)))
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
