"""The search: momentum PGD over random views, inside the per-pixel budget.

Three choices buy transfer to models we never optimise against: momentum on normalised
gradients (MI-FGSM), input diversity (fresh random views each step) and translation-invariant
gradient smoothing (a small Gaussian on the gradient, which also keeps the pattern low-key).
An SSIM term pulls the change back wherever it buys no protection. A latent encoder, attacked
white-box, gets neither the smoothing nor the long momentum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from kornia.filters import gaussian_blur2d

from sfumato.engine.devices import autocast
from sfumato.engine.levels import Search
from sfumato.engine.objectives import StyleTerm
from sfumato.engine.ssim_term import SsimToReference
from sfumato.engine.views import ViewPool
from sfumato.errors import stop_if_asked

MOMENTUM = 0.9
# A latent encoder is attacked white-box: its own gradient, not a long average that transfers, is
# the way to go, so its momentum is short.
LATENT_MOMENTUM = 0.5
SSIM_WEIGHT = 0.5  # a heavier term costs transfer; flat colour is held by the budget map instead
GRADIENT_SIGMA = 1.0
STEP_START, STEP_END = 0.25, 0.04  # step size as a share of the local budget, cosine-annealed
STEP_POWER = 1.0  # steps follow the momentum itself: they transfer better than sign steps (0)


def step_direction(momentum: torch.Tensor, power: float) -> torch.Tensor:
    """The sign of the momentum, or a shape between it and the momentum itself.

    The binding limit is the PSNR floor, an RMS bound, under which a plain sign step spreads the
    change evenly over pixels that matter little; ``power`` keeps some of the gradient's shape.
    """
    if power <= 0:
        return momentum.sign()
    shaped = momentum.abs().pow(power)
    return momentum.sign() * shaped / shaped.pow(2).mean().sqrt().clamp_min(1e-12)


def step_fraction(step: int, steps: int) -> float:
    if steps <= 1:
        return STEP_START
    t = step / (steps - 1)
    return STEP_END + (STEP_START - STEP_END) * 0.5 * (1 + math.cos(math.pi * t))


def _gradient(
    image: torch.Tensor,
    delta: torch.Tensor,
    terms: Sequence[StyleTerm],
    views: Sequence,
    similarity: SsimToReference | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d δ in two parts: pooled encoders with the SSIM term (translation-smoothed), and
    latent encoders (as they are).

    The smoothing buys transfer between classifiers; a latent encoder is attacked white-box, and
    the fine detail its 8× down-sampling keeps is what moves it, which the smoothing would blur
    away. The parts are kept apart because the search gives each its own momentum. Each group gets
    its own graph, so one backward each; the SSIM term computes its own gradient, band by band.
    """
    smoothed = torch.zeros_like(image)
    sharp = torch.zeros_like(image)
    for spatial, grad in ((False, smoothed), (True, sharp)):
        group = [term for term in terms if term.encoder.spatial == spatial]
        if not group:
            continue
        part = delta.detach().requires_grad_(True)
        cloaked = (image + part).clamp(0, 1)
        with autocast(image.device):
            shifts = torch.stack([term.shift(cloaked, views).mean() for term in group])
        (part_grad,) = torch.autograd.grad(-shifts.float().sum() / len(terms), part)
        grad += part_grad
    if similarity is not None:
        moved = image + delta.detach()
        inside = ((moved >= 0) & (moved <= 1)).to(image.dtype)  # what the clamp lets through
        smoothed += inside * similarity.gradient(moved.clamp(0, 1), SSIM_WEIGHT)
    if GRADIENT_SIGMA > 0:
        smoothed = gaussian_blur2d(smoothed, (5, 5), (GRADIENT_SIGMA, GRADIENT_SIGMA))
    return smoothed, sharp


def search_perturbation(
    image: torch.Tensor,
    eps: torch.Tensor,
    terms: Sequence[StyleTerm],
    search: Search,
    *,
    seed: int,
    rms: float | None = None,
    ssim_floor: float | None = None,
    greyscale: bool = False,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Return δ (same shape as ``image``) with |δ| ≤ eps per pixel and image + δ in [0, 1].

    ``rms``: after every step δ is scaled back onto this root-mean-square change (the PSNR
    floor), so a budget map with headroom lets the search spend the whole floor where it helps.
    ``ssim_floor``: after every step, and at the end, δ is taken back where its structure shows
    most until the cloak's SSIM to the original is at least this (:func:`hold_ssim_floor`).
    """
    pool = ViewPool(image.shape[-2], image.shape[-1], seed=seed, steps=search.steps, per_step=search.views)
    delta = torch.zeros_like(image)
    momentum = torch.zeros_like(image)  # pooled encoders and SSIM
    latent_momentum = torch.zeros_like(image)
    similarity = SsimToReference(image) if SSIM_WEIGHT or ssim_floor else None
    for step in range(search.steps):
        stop_if_asked(should_stop)
        views = pool.views(step)
        pooled, latent = _gradient(image, delta, terms, views, similarity if SSIM_WEIGHT else None)
        with torch.no_grad():
            if greyscale:
                pooled = pooled.mean(1, keepdim=True).expand_as(pooled)
                latent = latent.mean(1, keepdim=True).expand_as(latent)
            # One scale for both parts keeps the balance balance_terms set between the members.
            scale = (pooled + latent).abs().mean().clamp_min(1e-12)
            momentum = MOMENTUM * momentum + pooled / scale
            latent_momentum = LATENT_MOMENTUM * latent_momentum + latent / scale
            direction = step_direction(momentum + latent_momentum, STEP_POWER)
            step_size = step_fraction(step, search.steps) * eps
            delta = _inside(image, delta.detach() - step_size * direction, eps)
            if rms is not None:
                delta = delta * min(1.0, rms / max(_rms(delta), 1e-12))
            if ssim_floor is not None:
                delta = hold_ssim_floor(image, delta, similarity, ssim_floor)
        if progress is not None:
            progress((step + 1) / search.steps)
    if rms is not None:
        delta = spend_floor(image, delta.detach(), eps, rms)
    if ssim_floor is not None:
        delta = hold_ssim_floor(image, delta, similarity, ssim_floor)
    return delta.detach()


# Smoothing (working pixels) of the SSIM deficit map that the floor caps: a patch a few pixels
# across, about where blocky patches show, not single pixels (which SSIM's own window already pools).
DEFICIT_SIGMA = 4.0


def hold_ssim_floor(
    image: torch.Tensor, delta: torch.Tensor, similarity: SsimToReference, floor: float
) -> torch.Tensor:
    """δ taken back where its structure shows most, until SSIM(image + δ, image) is at least ``floor``.

    The PSNR floor bounds the change's energy, not its structure: on a painting with little fine
    texture, a white-box latent search spends that energy on blocky patches that show. The local
    SSIM deficit is capped at the one level that keeps the mean on the floor (water-filling): δ is
    scaled by √(cap / deficit) wherever the deficit is above the cap (it grows about with the
    square of the change), and left alone elsewhere. Against scaling δ as a whole, this takes the
    patches that show down furthest and keeps more of the change where it is hidden.
    A scaled δ stays inside the map and the pixel range: each pixel moves between the original and
    the cloak.
    """
    with torch.no_grad():
        local = similarity.map((image + delta).clamp(0, 1)).mean(1, keepdim=True)
        if float(local.mean()) >= floor:
            return delta
        deficit = 1 - local
        size = 2 * math.ceil(3 * DEFICIT_SIGMA) + 1
        deficit = gaussian_blur2d(
            deficit.clamp_min(0), (size, size), (DEFICIT_SIGMA, DEFICIT_SIGMA), border_type="reflect"
        ).clamp_min(1e-12)

        def capped(cap: float) -> torch.Tensor:
            return delta * (cap / deficit).sqrt().clamp(max=1.0)

        lo, hi = 0.0, float(deficit.max())
        for _ in range(14):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _ssim(image, capped(mid), similarity) >= floor else (lo, mid)
        return capped(lo)


def _ssim(image: torch.Tensor, delta: torch.Tensor, similarity: SsimToReference) -> float:
    return 1 - float(similarity.loss((image + delta).clamp(0, 1)))


def spend_floor(image: torch.Tensor, delta: torch.Tensor, eps: torch.Tensor, rms: float) -> torch.Tensor:
    """Scale δ up onto the floor's RMS, inside the map and the pixel range.

    Gradient-shaped steps leave small changes in most pixels, so a short search (``fast``) can
    end a decibel above the floor; what is left is spent along the direction found.
    """
    for _ in range(4):
        current = _rms(delta)
        if current <= 0 or current >= rms * 0.999:
            break
        delta = _inside(image, delta * (rms / current), eps)
    return delta


# The eye is most sensitive to patches a few to a few tens of pixels across (at 100 % on a 4K
# monitor): a blotch there shows where a grain of the same amplitude does not. The change's local
# mean (Gaussian, σ LOW_PASS_SIGMA) may reach only this share of the local budget: at the same PSNR
# the cloak looks cleaner, for a little less shift.
LOW_FREQUENCY_SHARE = 0.3
LOW_PASS_SIGMA = 3.0


def _inside(image: torch.Tensor, delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """δ with its blotches capped, clipped to the per-pixel budget and to what keeps image + δ
    in [0, 1]."""
    size = 2 * math.ceil(2 * LOW_PASS_SIGMA) + 1
    low = gaussian_blur2d(delta, (size, size), (LOW_PASS_SIGMA, LOW_PASS_SIGMA), border_type="reflect")
    cap = LOW_FREQUENCY_SHARE * eps
    delta = delta - (low - torch.maximum(torch.minimum(low, cap), -cap))
    delta = torch.maximum(torch.minimum(delta, eps), -eps)
    return (image + delta).clamp(0, 1) - image


def _rms(delta: torch.Tensor) -> float:
    return float(delta.pow(2).mean().sqrt())
