"""The quick check's verdict on a cloak's latent members, given by the held-out judge.

A classifier barely moves when only a latent encoder was optimised, so judging a latent cloak
by one marks every such file incomplete; the judge, an autoencoder the search never saw, is
what tells whether the latent move carries over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from sfumato.cloak_report import LatentVerdict
from sfumato.engine.encoders import Encoder
from sfumato.verify.judge import JUDGE_SPEC, load_judge
from sfumato.verify.judge.shift import Transform, judge_shifts
from sfumato.verify.targets import CheckTarget

# The judge's shift a latent cloak must reach on the image and after JPEG 75: above what noise
# does (Gaussian noise at about 38 dB PSNR moved it at most 0.002 toward the target on five Van
# Gogh paintings), below what a white-box TAEF2 cloak at ``fast`` reached (0.008 on the image,
# 0.010 after JPEG 75, where TAEF2 itself saw 0.18). Measured, not a target: see docs/design.md.
LATENT_THRESHOLD = 0.005


def latent_verdict(
    original: torch.Tensor,
    cloaked: torch.Tensor,
    target: CheckTarget,
    cloak_encoders: Sequence[Encoder],
    transforms: Mapping[str, Transform],
    threshold: float = LATENT_THRESHOLD,
) -> LatentVerdict | None:
    """The judge's verdict, or None when the cloak has no latent member (or no target picture)."""
    members = tuple(e.spec for e in cloak_encoders if e.spatial)
    if not members or target.image is None:
        return None
    figures = judge_shifts(load_judge(original.device), original, cloaked, target.image, transforms)
    shift = figures.worst
    reason = None
    if shift < threshold:
        worst = min(figures.shifts, key=figures.shifts.get)
        seen = "on the image" if worst == "none" else f"after {worst}"
        reason = (
            f"the held-out latent judge sees it only {shift:.3f} of the way to {target.label} {seen}, "
            f"below {threshold:g}: try a higher intensity or quality"
        )
    return LatentVerdict(
        passed=reason is None,
        judge=JUDGE_SPEC,
        members=members,
        threshold=threshold,
        shift=round(shift, 4),
        shifts=figures.shifts,
        reason=reason,
    )
