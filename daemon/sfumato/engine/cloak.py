"""One call cloaks one image: ``cloak_image(image, options) -> CloakResult``.

The perturbation is searched at a bounded working resolution (what every encoder and scraper
looks at anyway) and upsampled onto the full-resolution pixels, so time and memory stay bounded
for 24-megapixel inputs while the output keeps every original pixel's resolution.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sfumato.cloak_report import BudgetReport, CloakReport, EncoderShift, PoisonReport
from sfumato.engine.budget import budget_map
from sfumato.engine.devices import pick_device, release_freed_memory, set_threads
from sfumato.engine.encoders import Encoder, load_encoder
from sfumato.engine.image_ops import resize_antialiased
from sfumato.engine.levels import LATENT_TEXTURE_MASKING, budget_for, search_for
from sfumato.engine.metrics import max_change, psnr, ssim_score
from sfumato.engine.objectives import (
    StyleTerm,
    balance_terms,
    centroid,
    embed_views,
    projection_shift,
    unit,
)
from sfumato.engine.optimiser import search_perturbation
from sfumato.engine.poison import PoisonPlan, combine_terms, plan_poison, targeted_success
from sfumato.engine.stylizers import STYLIZERS
from sfumato.engine.targets import reference_images, text_targets
from sfumato.engine.views import View, ViewSampler
from sfumato.engine.visibility import WrittenPicture, hold_visibility_floor
from sfumato.errors import EncoderError, UsageError
from sfumato.options import CloakRequest
from sfumato.specs import StyleKind, StyleRequest, parse_style

log = logging.getLogger(__name__)

CENTROID_VIEWS = 6
BAND = 512


@dataclass
class CloakResult:
    """``pixels``: float32 H×W×3 in [0, 1], already on the output's bit-depth grid."""

    pixels: np.ndarray
    report: CloakReport

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(np.round(self.pixels * 255).astype(np.uint8), "RGB")


def to_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float32)
        array /= 255.0  # in place: a 24-megapixel image is 288 MB as float32
        return array
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise UsageError(f"expected an H×W×3 image array, got shape {array.shape}")
    return array


def load_encoders(
    specs: Sequence[str],
    device: torch.device,
    *,
    skip_unavailable: bool = False,
    skipped: dict[str, str] | None = None,
    purpose: str = "the ensemble",
) -> list[Encoder]:
    """The one ensemble loader (cloak, daemon, check). With ``skip_unavailable`` a member that
    cannot be loaded (no network for a first download) is left out with one warning, as long as
    one remains; ``skipped`` (spec → why) remembers such members, so a daemon asks only once."""
    if not specs:
        raise UsageError("no encoder given: name at least one, for example effnet-lite:0")
    skipped = {} if skipped is None else skipped
    loaded, first_error = [], None
    for spec in specs:
        if spec in skipped:
            continue
        try:
            loaded.append(load_encoder(spec, device))
        except EncoderError as exc:
            if not skip_unavailable:
                raise
            first_error = first_error or exc
            skipped[spec] = str(exc)
            log.warning("leaving %s out of %s: %s", spec, purpose, exc)
    if not loaded:
        if first_error is not None:
            raise first_error
        reasons = "; ".join(skipped[s] for s in specs if s in skipped)
        raise EncoderError(f"no encoder of {', '.join(specs)} could be loaded: {reasons}")
    return loaded


def working_copy(pixels: np.ndarray, side: int, device: torch.device) -> torch.Tensor:
    """The image at most ``side`` pixels on its longer edge, as a 1×3×h×w tensor.

    Large images are first box-averaged band by band by a whole factor, so no full-resolution
    tensor (or resampling buffer) is ever made; the antialiased resize then works on a small one.
    """
    h, w = pixels.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].to(device)
    factor = max(1, int(1 / scale))
    rows = BAND // factor * factor or factor
    bands = []
    for top in range(0, h, rows):
        band = torch.from_numpy(np.ascontiguousarray(pixels[top : top + rows])).permute(2, 0, 1)[None]
        bands.append(F.avg_pool2d(band, factor, ceil_mode=True) if factor > 1 else band)
    reduced = torch.cat(bands, dim=2)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    return resize_antialiased(reduced, size).clamp(0, 1).to(device)


def fixed_views(image: torch.Tensor, seed: int, count: int = CENTROID_VIEWS) -> list[View]:
    sampler = ViewSampler(image.shape[-2], image.shape[-1], seed=seed + 7919)
    return [sampler.sample(mild=(i == 0)) for i in range(count)]


def clean_embedding(encoder: Encoder, image: torch.Tensor) -> torch.Tensor:
    """The unit embedding of the whole image: resized to a pooled encoder's input, and at its own
    size for a latent encoder (as ``sfumato check`` and a generator's autoencoder see it)."""
    with torch.no_grad():
        if encoder.spatial:
            return unit(encoder.embed(image))[0]
        view = ViewSampler(image.shape[-2], image.shape[-1], seed=0)
        return embed_views(encoder, image, [view.sample(mild=True)])[0]


def choose_auto_style(encoders: Sequence[Encoder], image: torch.Tensor) -> str:
    """The built-in style the ensemble sees farthest from the image itself (deterministic)."""
    small = resize_antialiased(image, _fit(image, 256)).clamp(0, 1)
    scores = {}
    for name, stylize in STYLIZERS.items():
        styled = stylize(small)
        sims = [float(clean_embedding(e, small) @ clean_embedding(e, styled)) for e in encoders]
        scores[name] = sum(sims) / len(sims)
    return min(sorted(scores), key=lambda n: scores[n])


def _fit(image: torch.Tensor, side: int) -> tuple[int, int]:
    h, w = image.shape[-2:]
    scale = min(1.0, side / max(h, w))
    return max(8, round(h * scale)), max(8, round(w * scale))


def build_terms(
    encoders: Sequence[Encoder], image: torch.Tensor, request: StyleRequest, seed: int
) -> tuple[list[StyleTerm], torch.Tensor | None]:
    views = fixed_views(image, seed)
    if request.kind is StyleKind.BUILTIN:
        target_image = STYLIZERS[request.value](image).clamp(0, 1)
        # Aligned views: each view of the cloak is measured against the same view of the target.
        terms = [StyleTerm(e, original_image=image, target_image=target_image) for e in encoders]
        return balance_terms(terms, image, views[:2]), target_image
    spatial = [e.spec for e in encoders if e.spatial]
    if spatial:
        raise UsageError(
            f"encoder {spatial[0]} compares images region by region and needs a built-in style "
            f"({', '.join(STYLIZERS)}), not {request.kind.value} targets"
        )
    if request.kind is StyleKind.TEXT:
        targets = text_targets(encoders, request.value)
    else:
        refs = [
            working_copy(to_array(Image.open(p)), 512, image.device)
            for p in reference_images(Path(request.value))
        ]
        targets = []
        for enc in encoders:
            emb = torch.stack([clean_embedding(enc, r) for r in refs]).mean(0)
            targets.append(emb / emb.norm())
    terms = [StyleTerm(e, centroid(e, image, views), t) for e, t in zip(encoders, targets, strict=True)]
    return balance_terms(terms, image, views[:2]), None


def anchor_terms(
    encoders: Sequence[Encoder], image: torch.Tensor, folder: str | Path | None, seed: int
) -> list[StyleTerm]:
    """Pull pooled features toward anchor images of the poison target, if a folder is given."""
    if not folder:
        return []
    refs = [working_copy(to_array(Image.open(p)), 512, image.device) for p in reference_images(Path(folder))]
    views = fixed_views(image, seed)
    terms = []
    for enc in encoders:
        if enc.spatial:
            continue
        with torch.no_grad():
            emb = torch.stack([clean_embedding(enc, r) for r in refs]).mean(0)
        terms.append(StyleTerm(enc, centroid(enc, image, views), emb / emb.norm()))
    return terms


def poison_report(
    plan: PoisonPlan | None, encoders: Sequence[Encoder], cloaked: torch.Tensor
) -> PoisonReport | None:
    if plan is None:
        return None
    return PoisonReport(**plan.report(), **targeted_success(encoders, cloaked, plan.target))


def apply_full_resolution(
    pixels: np.ndarray,
    delta: torch.Tensor,
    bit_depth: int,
    rows: slice = slice(None),
    cols: slice = slice(None),
) -> np.ndarray:
    """Upsample δ (bilinearly, pixel centres aligned) band by band onto the full image and round
    to the output's bit depth.

    ``rows``, ``cols``: only that part of the output, exactly as in the whole picture's (each
    output pixel is interpolated from its own position alone), for a check that looks at one
    part of the picture many times.
    """
    h, w = pixels.shape[:2]
    top, stop, _ = rows.indices(h)
    left, right, _ = cols.indices(w)
    levels = 2**bit_depth - 1
    delta = delta.float().cpu()[0]
    out = np.empty((max(0, stop - top), max(0, right - left), *pixels.shape[2:]), dtype=pixels.dtype)
    across = _bilinear_taps(w, delta.shape[-1], left, right)
    for first in range(top, stop, BAND):
        last = min(stop, first + BAND)
        band = _lerp(_lerp(delta, _bilinear_taps(h, delta.shape[-2], first, last), dim=1), across, dim=2)
        band = band.permute(1, 2, 0).numpy()
        written = np.round(np.clip(pixels[first:last, left:right] + band, 0, 1) * levels) / levels
        out[first - top : last - top] = written
    return out


Taps = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _bilinear_taps(size: int, source: int, start: int, stop: int) -> Taps:
    """For outputs ``start``..``stop`` of ``size`` made from ``source`` samples: the two source
    indices each one blends and the second's weight (PyTorch's bilinear, pixel centres aligned)."""
    position = ((torch.arange(start, stop, dtype=torch.float64) + 0.5) * (source / size) - 0.5).clamp_min(0)
    below = position.floor().long().clamp(max=source - 1)
    return below, (below + 1).clamp(max=source - 1), (position - below).float()


def _lerp(values: torch.Tensor, taps: Taps, dim: int) -> torch.Tensor:
    below, above, weight = taps
    shape = [1] * values.dim()
    shape[dim] = -1
    before = (slice(None),) * dim
    return torch.lerp(values[(*before, below)], values[(*before, above)], weight.view(shape))


def within_floor(
    pixels: np.ndarray,
    delta: torch.Tensor,
    bit_depth: int,
    floor: float,
    ssim_floor: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """The output pixels, their PSNR, which is at least ``floor``, and their SSIM, which is at
    least ``ssim_floor`` when given.

    Rounding to the output's bit depth adds to the change: a δ that sits at a budget cap between
    two levels rounds the same way everywhere (up to 0.2 dB measured). Where that crosses the
    floor, δ is scaled back by what is missing and written again. The SSIM is handed back so the
    report does not compute it a second time (about a second on 4 MP).
    """
    out = apply_full_resolution(pixels, delta, bit_depth)
    achieved = psnr(pixels, out)
    for _ in range(4):
        if achieved >= floor:
            break
        delta = delta * 10 ** ((achieved - floor - 0.01) / 20)
        out = apply_full_resolution(pixels, delta, bit_depth)
        achieved = psnr(pixels, out)
    similarity = ssim_score(pixels, out)
    if ssim_floor is not None and similarity < ssim_floor:
        out, similarity = _within_ssim_floor(pixels, delta, bit_depth, ssim_floor)
        achieved = psnr(pixels, out)
    return out, achieved, similarity


def _within_ssim_floor(
    pixels: np.ndarray, delta: torch.Tensor, bit_depth: int, floor: float
) -> tuple[np.ndarray, float]:
    """The largest share of δ, found in a few tries, whose rounded pixels keep SSIM at ``floor``,
    with that SSIM.

    The search held the floor before rounding; rounding does not scale with δ (a small change
    that rounds to nothing costs nothing), so the share is narrowed between a try that passed and
    one that did not. If none passes, the smallest try is written (the report shows its SSIM).
    """
    passed, failed = 0.0, 1.0
    best = None
    share = 0.98
    for _ in range(6):
        out = apply_full_resolution(pixels, delta * share, bit_depth)
        similarity = ssim_score(pixels, out)
        if similarity >= floor:
            passed, best = share, (out, similarity)
            if failed - passed < 0.01:
                break
        else:
            failed = share
        share = (passed + failed) / 2 if best is not None else share * 0.9
    return (out, similarity) if best is None else best


def cloak_image(
    image: Image.Image | np.ndarray,
    options: CloakRequest | None = None,
    *,
    encoders: Sequence[Encoder] | None = None,
    bit_depth: int = 8,
    greyscale: bool = False,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CloakResult:
    """Cloak one image toward ``options.style``; see :class:`CloakResult` and the report keys."""
    options = options or CloakRequest()
    started = time.perf_counter()
    set_threads(options.threads)
    device = pick_device(options.device)
    torch.manual_seed(options.seed)
    pixels = to_array(image)
    budget = budget_for(options.intensity)
    search = search_for(options.quality, options.steps)
    encoders = list(encoders) if encoders is not None else load_encoders(options.encoders, device)
    work = working_copy(pixels, search.work_side, device)

    request = parse_style(options.style)
    poison = None
    if options.poison:
        poison = plan_poison(encoders, work, options.poison, options.poison_targets)
        poison.terms += anchor_terms(encoders, work, options.poison_anchors, options.seed)
    elif request.kind is StyleKind.NONE:
        raise UsageError("style none without poisoning leaves nothing to do: choose a style or enable poison")
    if request.kind is StyleKind.AUTO:
        request = StyleRequest(StyleKind.BUILTIN, choose_auto_style(encoders, work))
    terms, target_image = (
        ([], None) if request.kind is StyleKind.NONE else build_terms(encoders, work, request, options.seed)
    )
    latent = any(term.encoder.spatial for term in terms)
    ssim_floor = budget.latent_ssim_floor if latent else None
    eps = budget_map(work, budget, LATENT_TEXTURE_MASKING if latent else 0.0)
    if budget.eps_max > 0:
        delta = search_perturbation(
            work,
            eps,
            combine_terms(terms, poison.terms if poison else []),
            search,
            seed=options.seed,
            rms=budget.rms,
            ssim_floor=ssim_floor,
            greyscale=greyscale,
            progress=progress,
            should_stop=should_stop,
        )
        written = None
        if tuple(work.shape[-2:]) != tuple(pixels.shape[:2]):

            def render(candidate: torch.Tensor, rows: slice, cols: slice) -> np.ndarray:
                return apply_full_resolution(pixels, candidate, bit_depth, rows, cols)

            written = WrittenPicture(pixels, render)
        delta = hold_visibility_floor(
            work,
            delta,
            budget.jod_floor,
            budget.ssimulacra2_floor,
            work.shape[-1] / pixels.shape[1],
            written,
        )
    else:
        delta = torch.zeros_like(work)
    release_freed_memory()
    out, achieved, similarity = within_floor(pixels, delta, bit_depth, budget.psnr_floor, ssim_floor)

    cloaked_work = working_copy(out, search.work_side, device)
    encoder_reports = []
    with torch.no_grad():
        for term in terms:
            enc = term.encoder
            before, after = clean_embedding(enc, work), clean_embedding(enc, cloaked_work)
            goal = clean_embedding(enc, target_image) if target_image is not None else term.target
            shift = float(projection_shift(after[None], before[None], goal[None])[0])
            encoder_reports.append(
                EncoderShift(
                    encoder=enc.spec,
                    loss_before=round(1 - float(before @ goal), 5),
                    loss_after=round(1 - float(after @ goal), 5),
                    shift=round(shift, 4),
                )
            )
    report = CloakReport(
        style=request,
        intensity=options.intensity,
        quality=options.quality,
        budget=BudgetReport(
            max_change=round(budget.eps_max * 255, 3),
            psnr_floor=round(budget.psnr_floor, 2),
            jod_floor=round(budget.jod_floor, 2),
            ssimulacra2_floor=round(budget.ssimulacra2_floor, 1),
            mean_budget=round(float(eps.mean()) * 255, 3),
        ),
        psnr=round(achieved, 3),
        ssim=round(similarity, 5),
        max_change=round(max_change(pixels, out), 3),
        encoders=tuple(encoder_reports),
        poison=poison_report(poison, encoders, cloaked_work),
        steps=search.steps if budget.eps_max > 0 else 0,
        views=search.views,
        working_size=(int(work.shape[-2]), int(work.shape[-1])),
        device=str(device),
        seed=options.seed,
        seconds=round(time.perf_counter() - started, 3),
    )
    return CloakResult(pixels=out, report=report)


__all__ = ["CloakResult", "cloak_image", "load_encoders", "unit"]
