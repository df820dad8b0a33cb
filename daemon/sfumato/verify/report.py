"""``sfumato check`` as a library call: every figure about one original and its cloak."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sfumato.engine.cloak import working_copy
from sfumato.engine.encoders import Encoder
from sfumato.errors import UsageError
from sfumato.specs import parse_checked_poison
from sfumato.verify.figures import visual_change
from sfumato.verify.judge.report import judge_report
from sfumato.verify.protection import encoder_protection, purified_protection, strongest_builtin
from sfumato.verify.purifiers import PURIFIERS, Purifier
from sfumato.verify.targets import CheckTarget, resolve_target
from sfumato.verify.transforms import TRANSFORMS
from sfumato.verify.visibility import measure_visibility

log = logging.getLogger(__name__)

# Larger than the quick check's QUICK_CHECK_SIDE (verify/quick.py): sfumato check is asked for, not
# run on every cloak, and measures many encoders and purifiers at what encoders and scrapers look
# at anyway (a little above the default search size).
REPORT_SIDE = 768


def poison_target(poison: str) -> CheckTarget:
    """``CONCEPT:TARGET`` (or just ``TARGET``): what a model should learn the image shows."""
    return CheckTarget("text", parse_checked_poison(poison).target)


def check_images(
    original: np.ndarray,
    cloaked: np.ndarray,
    encoders: Sequence[Encoder],
    *,
    style: str = "auto",
    poison: str | None = None,
    purifiers: Mapping[str, Purifier] = PURIFIERS,
    visibility: bool = True,
) -> dict:
    """Visual change (and, with ``visibility``, the perceptual metrics) on the full images; per
    encoder, movement toward the target at working size on the image itself, after each
    transform in :data:`TRANSFORMS` and after each of ``purifiers``."""
    if original.shape != cloaked.shape:
        raise UsageError(
            f"the images differ in size ({original.shape[1]}×{original.shape[0]} and "
            f"{cloaked.shape[1]}×{cloaked.shape[0]}): check compares a cloak with its own original"
        )
    report = visual_change(original, cloaked)
    device = next(iter(encoders[0].buffers())).device
    if visibility:
        try:
            report["visibility"] = measure_visibility(original, cloaked, device).as_report()
        except ValueError as exc:
            report["visibility"] = {"error": str(exc)}
    x = working_copy(original, REPORT_SIDE, device)
    c = working_copy(cloaked, REPORT_SIDE, device)
    if poison:
        target = poison_target(poison)
        report["poison"] = poison
    elif (style or "auto").strip().lower() == "auto":
        target, gains = strongest_builtin(encoders, x, c)
        report["target_chosen"] = "auto: the built-in style the cloak moved toward most"
        report["auto_cosine_gains"] = gains
    else:
        target = resolve_target(style, x)
    report["target"] = target.label
    report["target_kind"] = target.kind
    report["working_size"] = list(x.shape[-2:])
    report["transforms"] = list(TRANSFORMS)
    report["encoders"] = [encoder_protection(e, x, c, target) for e in encoders]
    latent = judge_report(x, c, target)
    if latent is not None:
        report["latent_judge"] = latent.as_report()
    purified = purify_pair(purifiers, x, c)
    report["purifiers"] = list(purified)
    for entry, encoder in zip(report["encoders"], encoders, strict=True):
        if "error" not in entry and purified:
            entry.update(purified_protection(encoder, purified, target, poison=bool(poison)))
    return report


def purify_pair(
    purifiers: Mapping[str, Purifier], original: torch.Tensor, cloaked: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The original and the cloak after each purifier (one it cannot run is left out, logged)."""
    out = {}
    for name, purifier in purifiers.items():
        try:
            out[name] = (purifier(original), purifier(cloaked))
        except ImportError as exc:
            log.warning("leaving purifier %s out: %s (pip install opencv-python-headless)", name, exc)
    return out


def verdict_phrase(entry: dict) -> str:
    """One encoder's result in a few words, for the preview and the terminal."""
    if "error" in entry:
        return f"{entry['encoder']}: cannot check"
    phrase = (
        f"{entry['encoder']} sees {entry['shift']:.0%} of the way to the target "
        f"(worst {entry['worst_shift']:.0%}"
    )
    if "worst_purified_shift" in entry:
        phrase += f"; {entry['worst_purified_shift']:.0%} after {entry['worst_purifier']}"
    return phrase + ")"
