"""The check after every cloak: one verifier encoder, the image itself and a JPEG re-save.

A cloak whose verifier sees it move less than ``threshold`` of the way toward its target is not
passed off as protected: the pipeline marks it incomplete. Costs a few forward passes of one
small encoder, against the hundreds of forward and backward passes of the search.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from sfumato.cloak_report import CloakReport, QuickCheck
from sfumato.engine.cloak import working_copy
from sfumato.engine.encoders import Encoder, load_encoder
from sfumato.engine.metrics import max_change
from sfumato.errors import EncoderError
from sfumato.options import CheckRequest
from sfumato.verify.judge.verdict import latent_verdict
from sfumato.verify.protection import transform_figures
from sfumato.verify.targets import target_of_cloak, usable
from sfumato.verify.transforms import TRANSFORMS

log = logging.getLogger(__name__)

# Smaller than sfumato check's REPORT_SIDE (verify/report.py): this runs after every cloak, with one
# verifier that looks at 240 px anyway; the JPEG re-save is made at this size.
QUICK_CHECK_SIDE = 512
CHECK_TRANSFORMS = ("none", "jpeg75")


def nothing_changed(original: np.ndarray, cloaked: np.ndarray) -> bool:
    """No sample moved by even a quarter of a 16-bit step (float rounding aside); band by band."""
    return max_change(original, cloaked) / 255 < 0.25 / 65535


def pick_verifier(
    spec: str, cloak_encoders: Sequence[Encoder], device: torch.device, target
) -> tuple[Encoder, bool]:
    """The configured verifier, or (if it cannot load or embed the target) a cloak encoder."""
    try:
        candidates = [load_encoder(spec, device)]
    except EncoderError as exc:
        log.warning("check encoder %s unavailable (%s): checking with a cloak encoder instead", spec, exc)
        candidates = []
    candidates += [e for e in cloak_encoders if e.spec != spec]
    fit = usable(candidates, target)
    if not fit:
        raise EncoderError(f"no encoder can check a cloak toward {target.label!r}: add {spec}")
    chosen = fit[0]
    return chosen, chosen.spec not in {e.spec for e in cloak_encoders}


def quick_check(
    original: np.ndarray,
    cloaked: np.ndarray,
    report: CloakReport,
    settings: CheckRequest,
    cloak_encoders: Sequence[Encoder],
) -> QuickCheck:
    """Verdict on one cloak (pixels H×W×3 in [0, 1]; ``report`` from ``cloak_image``;
    ``settings`` resolved, every field set)."""
    if nothing_changed(original, cloaked):
        return _unchanged(settings)
    started = time.perf_counter()
    device = next(iter(cloak_encoders[0].buffers())).device if cloak_encoders else torch.device("cpu")
    x = working_copy(original, QUICK_CHECK_SIDE, device)
    c = working_copy(cloaked, QUICK_CHECK_SIDE, device)
    target = target_of_cloak(report, x)
    verifier, held_out = pick_verifier(settings.encoder, cloak_encoders, device, target)
    shifts = {
        name: transform_figures(verifier, x, c, target, TRANSFORMS[name])["shift"]
        for name in CHECK_TRANSFORMS
    }
    shift = min(shifts.values())
    threshold = float(settings.threshold)
    latent = latent_verdict(x, c, target, cloak_encoders, {n: TRANSFORMS[n] for n in CHECK_TRANSFORMS})
    # The classifier judges pooled members; a latent-only cloak is judged by the latent judge alone.
    judged_by_classifier = latent is None or not all(e.spatial for e in cloak_encoders)
    reason = None
    if judged_by_classifier and shift < threshold:
        worst = min(shifts, key=shifts.get)
        seen = "on the image" if worst == "none" else f"after {worst}"
        reason = (
            f"the check encoder {verifier.spec} sees it only {shift:.3f} of the way to "
            f"{target.label} {seen}, below the threshold {threshold:g}: try a higher intensity or quality"
        )
    if latent is not None and not latent.passed:
        reason = latent.reason if reason is None else f"{reason}; {latent.reason}"
    return QuickCheck(
        passed=reason is None,
        encoder=verifier.spec,
        held_out=held_out,
        threshold=threshold,
        shift=round(shift, 4),
        shifts=shifts,
        seconds=round(time.perf_counter() - started, 3),
        reason=reason,
        latent=latent,
    )


def verdict_for(
    original: np.ndarray,
    cloaked: np.ndarray,
    report: CloakReport,
    settings: CheckRequest,
    cloak_encoders: Sequence[Encoder],
) -> QuickCheck | None:
    """The quick check if enabled; with it disabled, still a failing verdict for a cloak that
    changed nothing (intensity 0), which is never protected; otherwise None."""
    if settings.enabled is not False:
        return quick_check(original, cloaked, report, settings, cloak_encoders)
    if not nothing_changed(original, cloaked):
        return None
    return _unchanged(settings)


def _unchanged(settings: CheckRequest) -> QuickCheck:
    """A cloak that changed nothing fails without asking any model (and whatever the threshold)."""
    return QuickCheck(
        passed=False,
        encoder="",
        held_out=False,
        threshold=float(settings.threshold or 0.0),
        shift=0.0,
        shifts={},
        seconds=0.0,
        reason="the cloak changed no pixel (intensity 0?), so it protects nothing",
    )


__all__ = ["QuickCheck", "quick_check", "verdict_for"]
