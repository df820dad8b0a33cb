"""What one cloak did, as typed values: made by the engine, completed by the pipeline (skipped
encoders, the quick check's verdict), read by the daemon's jobs and printed by ``--json``.

Torch-free, so the daemon's side carries it without the engine. :meth:`CloakReport.to_json` is
the one place the JSON shape is written; its keys and their order are what ``sfumato cloak
--json`` has always printed (tests/test_json_shape.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sfumato.specs import StyleKind, StyleRequest


@dataclass(frozen=True)
class BudgetReport:
    """The change allowed, in 1/255 units, and the floors the cloak holds."""

    max_change: float
    psnr_floor: float
    jod_floor: float
    ssimulacra2_floor: float
    mean_budget: float


@dataclass(frozen=True)
class EncoderShift:
    """How far one ensemble member sees the cloak move toward the target (1 = all the way)."""

    encoder: str
    loss_before: float
    loss_after: float
    shift: float


@dataclass(frozen=True)
class PoisonReport:
    """What an image was poisoned from and to, and the surrogates' top-5 hit rate."""

    concept: str
    concept_confidence: float | None
    concept_auto: bool
    target: str
    target_auto: bool
    targeted_success: float
    target_rank: dict[str, int]


@dataclass(frozen=True)
class LatentVerdict:
    """The held-out latent judge on a cloak's latent members. ``shift``: its smallest shift over
    the check's transforms; ``members``: the cloak's latent encoders it stands in for."""

    passed: bool
    judge: str
    members: tuple[str, ...]
    threshold: float
    shift: float
    shifts: dict[str, float]
    reason: str | None = None


@dataclass(frozen=True)
class QuickCheck:
    """The check after a cloak. ``shift``: the smallest verifier shift over the image itself and
    its JPEG re-save; ``reason`` says why it did not pass."""

    passed: bool
    encoder: str
    held_out: bool
    threshold: float
    shift: float
    shifts: dict[str, float]
    seconds: float
    reason: str | None = None
    latent: LatentVerdict | None = None  # the held-out judge, on a cloak with latent members

    def as_report(self) -> dict[str, Any]:
        report = asdict(self)
        if self.latent is None:
            del report["latent"]
        return report


@dataclass(frozen=True)
class CloakReport:
    """``style``: the target the cloak aimed at (an ``auto`` style already resolved).
    ``skipped_encoders``, ``check`` and ``reason`` are the pipeline's: None from the engine alone."""

    style: StyleRequest
    intensity: str | float
    quality: str
    budget: BudgetReport
    psnr: float
    ssim: float
    max_change: float
    encoders: tuple[EncoderShift, ...]
    poison: PoisonReport | None
    steps: int
    views: int
    working_size: tuple[int, int]
    device: str
    seed: int
    seconds: float
    skipped_encoders: tuple[str, ...] | None = None
    check: QuickCheck | None = field(default=None)
    reason: str | None = None

    @property
    def target(self) -> str:
        return self.style.label

    @property
    def target_kind(self) -> str:
        return self.style.kind.value

    @property
    def poison_only(self) -> bool:
        return self.style.kind is StyleKind.NONE

    def to_json(self) -> dict[str, Any]:
        """Today's ``--json`` report, keys in their order; the pipeline's keys only once set."""
        out: dict[str, Any] = {
            "target": self.target,
            "target_kind": self.target_kind,
            "intensity": self.intensity,
            "quality": self.quality,
            "budget": asdict(self.budget),
            "psnr": self.psnr,
            "ssim": self.ssim,
            "max_change": self.max_change,
            "encoders": [asdict(e) for e in self.encoders],
            "poison": None if self.poison is None else asdict(self.poison),
            "steps": self.steps,
            "views": self.views,
            "working_size": list(self.working_size),
            "device": self.device,
            "seed": self.seed,
            "seconds": self.seconds,
        }
        if self.skipped_encoders is not None:
            out["skipped_encoders"] = list(self.skipped_encoders)
        if self.check is not None:
            out["check"] = self.check.as_report()
        if self.reason is not None:
            out["reason"] = self.reason
        return out
