"""How far the held-out judge sees a cloak moved, defined as every other shift in the project.

The projection shift of unit-normalised, flattened judge latents: the share of the way from the
original's latent to the target picture's latent that the cloak's latent has gone (0: nowhere,
1: all the way), as ``verify/protection.py`` measures encoders and ``bench/latent.py`` TAEF2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from sfumato.engine.objectives import projection_shift, unit
from sfumato.verify.judge import JUDGE_SPEC, LatentJudge

Transform = Callable[[torch.Tensor], torch.Tensor]


def latent_shift(
    judge: LatentJudge, original: torch.Tensor, cloaked: torch.Tensor, target: torch.Tensor
) -> float:
    """The judge's shift of ``cloaked`` from ``original`` toward ``target`` (1×3×H×W in [0, 1])."""
    x, c, t = (unit(judge.embed(image)) for image in (original, cloaked, target))
    return float(projection_shift(c, x, t)[0])


@dataclass(frozen=True)
class JudgeShifts:
    """The judge's shift on the image (``none``) and after each transform, applied alike to the
    original, the cloak and the target picture (a latent is spatial: a crop or resize of one
    only would be another image to it)."""

    shifts: dict[str, float] = field(default_factory=dict)
    judge: str = JUDGE_SPEC

    @property
    def worst(self) -> float:
        return min(self.shifts.values())

    def as_report(self) -> dict:
        """For ``sfumato check --json``: the shift on the image, the worst and each transform's."""
        worst = min(self.shifts, key=self.shifts.get)
        return {
            "judge": self.judge,
            "shift": self.shifts.get("none", self.worst),
            "worst_shift": self.worst,
            "worst_transform": worst,
            "transforms": dict(self.shifts),
        }


def judge_shifts(
    judge: LatentJudge,
    original: torch.Tensor,
    cloaked: torch.Tensor,
    target: torch.Tensor,
    transforms: Mapping[str, Transform],
) -> JudgeShifts:
    """The judge's shift under each of ``transforms`` (name → function on a 1×3×H×W batch)."""
    return JudgeShifts(
        {
            name: round(latent_shift(judge, op(original), op(cloaked), op(target)), 4)
            for name, op in transforms.items()
        }
    )
