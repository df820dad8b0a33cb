"""The held-out latent judge in ``sfumato check``: its shift on the image and after each transform."""

from __future__ import annotations

import torch

from sfumato.verify.judge import load_judge
from sfumato.verify.judge.shift import JudgeShifts, judge_shifts
from sfumato.verify.targets import CheckTarget
from sfumato.verify.transforms import TRANSFORMS


def judge_report(original: torch.Tensor, cloaked: torch.Tensor, target: CheckTarget) -> JudgeShifts | None:
    """What the judge sees, whatever encoders made the cloak; None for a target with no picture
    (text or reference folder), as a latent is compared with the target picture's own latent."""
    if target.image is None:
        return None
    return judge_shifts(load_judge(original.device), original, cloaked, target.image, TRANSFORMS)


def judge_lines(entry: dict) -> list[str]:
    """The judge's figures as ``sfumato check`` prints them."""
    shifts = "  ".join(f"{name} {shift:.3f}" for name, shift in entry["transforms"].items())
    return [
        f"held-out latent judge ({entry['judge']}, never optimised against): shift "
        f"{entry['shift']:.3f} on the image, worst {entry['worst_shift']:.3f} ({entry['worst_transform']})",
        f"  {shifts}",
    ]
