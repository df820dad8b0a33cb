"""Style cloak in FLUX.2's latent space (``tae:flux2``), white-box.

Cloak the shared Van Gogh images toward ``pixelart`` against TAEF2, then measure the projection
shift of flattened unit latents ((z(x') - z(x)) · (z(t) - z(x))) / |z(t) - z(x)|², with t the
pixelart version of the original, on the cloak and after JPEG 75, with PSNR, SSIM and seconds.
Two more columns say whether the shift survives what a trainer does to a posted image, the cloak,
the original and the target transformed alike: a crop 3-5 px off the 8-px latent grid, and a
resize to 0.8×. ``--measure DIR`` measures the cloaks an earlier run wrote with ``--save DIR``
instead of cloaking again.
Four more columns give the same shifts as the held-out latent judge sees them (``sfumato.verify.
judge``: a student of TAEF2 of another build, 16× down-sampling, that the search never optimises
against), the stand-in for an unseen generator's autoencoder.
``--time-ensemble`` instead times the default ensemble with and without TAEF2 on one 4 MP image.
``--blend`` makes no cloak: it moves each painting itself part of the way toward its target picture
(x + a·(t - x), rounded to 8 bits) and gives TAEF2's and the judge's shifts with the PSNR, for
scale: what a change that really is the target's look buys at each PSNR.

``--reference`` replaces the cloak with the plainest white-box search: the whole image at its own
size, no views, no budget map and no SSIM term, only the intensity's largest change and PSNR floor.
What it reaches is about as far as this budget moves the latent at all (see docs/design.md).

    python bench/latent.py [--limit N] [--start K] [--intensity default] [--quality default]
    python bench/latent.py --reference [--limit N]
    python bench/latent.py --measure DIR [--limit N] [--start K]
    python bench/latent.py --time-ensemble
    python bench/latent.py --blend [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import (
    SHARED,
    as_tensor,
    bench_options,
    bench_parser,
    cloak_each,
    features,
    jpeg,
    mean,
    print_summary,
    print_table,
    saved_each,
    spread,
    to_array,
    to_image,
    vangogh_images,
)

TAEF2 = f"tae:flux2@{SHARED / 'models' / 'taef2'}"
# The default ensemble with random ViT-B-32 weights: the same cost, no download.
ENSEMBLE = ("openclip:ViT-B-32/random", "effnet-lite:0")


def reference_search(tae, x: torch.Tensor, args: argparse.Namespace) -> Image.Image:
    """Normalised-gradient ascent on the whole image's shift, projected onto the PSNR floor's
    RMS change and the largest change; the step shrinks linearly from half the floor's RMS."""
    from sfumato.engine.image_ops import pixelart
    from sfumato.engine.levels import budget_for, search_for
    from sfumato.engine.objectives import projection_shift, unit

    budget = budget_for(args.intensity)
    steps = args.steps or search_for(args.quality).steps
    with torch.no_grad():
        zx, zt = unit(tae.embed(x)), unit(tae.embed(pixelart(x)))
    delta = torch.zeros_like(x)
    for step in range(steps):
        part = delta.clone().requires_grad_(True)
        shift = projection_shift(unit(tae.embed((x + part).clamp(0, 1))), zx, zt).sum()
        (grad,) = torch.autograd.grad(shift, part)
        with torch.no_grad():
            rate = 0.5 * (1 - step / steps) + 0.05
            delta = delta + rate * budget.rms * grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)
            delta = (x + delta.clamp(-budget.eps_max, budget.eps_max)).clamp(0, 1) - x
            delta = delta * min(1.0, budget.rms / float(delta.pow(2).mean().sqrt()))
    pixels = ((x + delta).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def off_grid_crop(x: torch.Tensor) -> torch.Tensor:
    """3 px off the top and 5 off the left (and the other way round at the far edges)."""
    return x[..., 3:-5, 5:-3]


def resized(x: torch.Tensor, factor: float = 0.8) -> torch.Tensor:
    small = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bilinear", antialias=True)
    return small.clamp(0, 1)


def surviving_shifts(tae, original: torch.Tensor, cloak: torch.Tensor, target: torch.Tensor) -> list[float]:
    """The shift after each trainer's transform, applied alike to the cloak, original and target:
    a latent is spatial, so a crop that moves its 8-px grid, or a resize, is a new image to it."""
    from sfumato.engine.objectives import projection_shift

    shifts = []
    for op in (off_grid_crop, resized):
        moved, origin, goal = (features(tae, op(x)) for x in (cloak, original, target))
        shifts.append(float(projection_shift(moved, origin, goal)[0]))
    return shifts


def all_shifts(encoder, x: torch.Tensor, image: Image.Image, target: torch.Tensor) -> list[float]:
    """One encoder's shift on the cloak, after JPEG 75 (of the cloak, as posted), after the
    off-grid crop and after the 0.8× resize."""
    from sfumato.engine.objectives import projection_shift

    zx, zt = features(encoder, x), features(encoder, target)
    shifts = [float(projection_shift(features(encoder, view), zx, zt)[0]) for view in (image, jpeg(image))]
    return shifts + surviving_shifts(encoder, x, as_tensor(image), target)


def reference_each(paths: list[Path], tae, args: argparse.Namespace):
    """Like ``cloak_each``, with the reference search in place of the cloak."""
    from sfumato.verify.figures import visual_change

    for path in paths:
        original = Image.open(path).convert("RGB")
        started = time.perf_counter()
        image = reference_search(tae, as_tensor(original), args)
        seconds = time.perf_counter() - started
        yield path, original, image, visual_change(to_array(original), to_array(image)), seconds


def efficacy(args: argparse.Namespace) -> None:
    from sfumato.engine.cloak import load_encoders
    from sfumato.engine.image_ops import pixelart
    from sfumato.verify.judge import load_judge

    (tae,) = load_encoders([TAEF2], torch.device("cpu"))
    judge = load_judge("cpu")
    if args.spread:  # every series of paintings in any prefix, not the olive groves first
        paths = spread(vangogh_images())[args.start :][: args.limit]
    else:
        paths = vangogh_images(args.limit, args.start)
    if args.measure:
        runs = saved_each(paths, args.measure)
    elif args.reference:
        runs = reference_each(paths, tae, args)
    else:
        options = bench_options(args, style="pixelart", encoders=(TAEF2,), device="cpu")
        runs = ((p, o, r.image, r.report.to_json(), s) for p, o, r, s in cloak_each(paths, options, [tae]))
    keys = ("cloak", "jpeg75", "crop", "resize", "judge", "judge jpeg75", "judge crop", "judge resize")
    shifts: dict[str, list[float]] = {k: [] for k in keys}
    psnrs, ssims, secs = [], [], []
    for path, original, image, report, seconds in runs:
        secs.append(seconds)
        x = as_tensor(original)
        target = pixelart(x)
        measured = all_shifts(tae, x, image, target) + all_shifts(judge, x, image, target)
        for key, shift in zip(keys, measured, strict=True):
            shifts[key].append(shift)
        psnrs.append(report["psnr"])
        ssims.append(report["ssim"])
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            image.save(args.save / f"{path.stem}.png")
        print(
            path.stem,
            *(f"{shifts[k][-1]:.3f}" for k in keys),
            f"{psnrs[-1]:.2f}",
            f"{ssims[-1]:.4f}",
            "—" if args.measure else f"{secs[-1]:.1f}s",
            flush=True,
        )
    print_summary(
        [
            "images",
            "shift on cloak",
            "after JPEG 75",
            "off-grid crop",
            "0.8× resize",
            "judge: on cloak",
            "judge: JPEG 75",
            "judge: off-grid crop",
            "judge: 0.8× resize",
            "mean PSNR (dB)",
            "mean SSIM",
            "s/image",
        ],
        [
            str(len(psnrs)),
            *(mean(shifts[k], 3) for k in keys),
            mean(psnrs, 2),
            mean(ssims, 4),
            "—" if args.measure else mean(secs, 1),
        ],
    )


BLEND_FRACTIONS = (0.1, 0.2, 0.3, 0.5)


def blend_scale(args: argparse.Namespace) -> None:
    """Mean PSNR and shifts (TAEF2, judge) of the paintings blended toward pixelart, per fraction."""
    from sfumato.engine.cloak import load_encoders
    from sfumato.engine.image_ops import pixelart
    from sfumato.engine.metrics import psnr
    from sfumato.engine.objectives import projection_shift
    from sfumato.verify.judge import load_judge

    encoders = {"TAEF2": load_encoders([TAEF2], torch.device("cpu"))[0], "judge": load_judge("cpu")}
    columns = ("PSNR", *encoders)
    measured = {a: {c: [] for c in columns} for a in BLEND_FRACTIONS}
    for path in vangogh_images(args.limit, args.start):
        original = Image.open(path).convert("RGB")
        x = as_tensor(original)
        target = pixelart(x)
        # the original's and the target's embeddings, once per painting for every fraction
        ends = {name: (features(e, x), features(e, target)) for name, e in encoders.items()}
        line = [path.stem]
        for fraction, figures in measured.items():
            image = to_image(x + fraction * (target - x))
            figures["PSNR"].append(psnr(to_array(original), to_array(image)))
            for name, encoder in encoders.items():
                figures[name].append(float(projection_shift(features(encoder, image), *ends[name])[0]))
            line.append(f"{fraction}: " + " ".join(f"{figures[c][-1]:.3f}" for c in columns))
        print(*line, flush=True)
    print()
    print_table(
        ["blend toward pixelart", "mean PSNR (dB)", "TAEF2 shift", "judge shift"],
        [[f"{a:.1f}", *(mean(f[c], 2 if c == "PSNR" else 3) for c in columns)] for a, f in measured.items()],
    )


def four_megapixels() -> Image.Image:
    """A 2304×1728 enlargement of a Van Gogh image: real texture at a typical upload size."""
    return Image.open(vangogh_images(1)[0]).convert("RGB").resize((2304, 1728), Image.Resampling.LANCZOS)


def time_ensemble(args: argparse.Namespace) -> None:
    """CPU seconds (not wall time: other jobs share the machine) of each ensemble, split into the
    fixed part and the search steps, extrapolated to the full step count of ``--quality``."""
    from sfumato.engine.cloak import cloak_image, load_encoders
    from sfumato.engine.levels import search_for

    image = four_megapixels()
    full_steps = search_for(args.quality).steps
    steps = args.steps or full_steps
    rows, totals = [], []
    for specs in (ENSEMBLE, (*ENSEMBLE, TAEF2)):
        encoders = load_encoders(specs, torch.device("cpu"))
        options = bench_options(args, style="pixelart", steps=steps, encoders=specs, device="cpu")
        ticks: list[float] = []
        started = time.process_time()
        result = cloak_image(
            image,
            options,
            encoders=encoders,
            progress=lambda _, ticks=ticks: ticks.append(time.process_time()),
        )
        total = time.process_time() - started
        per_step = (ticks[-1] - ticks[0]) / max(1, len(ticks) - 1)
        fixed = total - per_step * len(ticks)
        totals.append(fixed + per_step * full_steps)
        names = " + ".join(s.split("@")[0] for s in specs)
        rows.append(
            [names, f"{per_step:.2f}", f"{fixed:.1f}", f"{totals[-1]:.0f}", f"{result.report.psnr:.2f}"]
        )
        print(*rows[-1], flush=True)
    print()
    print_table(
        [
            f"encoders (4 MP, {args.quality}, {args.threads} thread)",
            "CPU s/step",
            "CPU s fixed",
            f"CPU s at {full_steps} steps",
            "PSNR (dB)",
        ],
        rows,
    )
    print(f"\nadding tae:flux2 costs {100 * (totals[1] / totals[0] - 1):+.0f}% time")


def main() -> None:
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--time-ensemble", action="store_true")
    parser.add_argument("--reference", action="store_true", help="the plain white-box search, not the cloak")
    parser.add_argument("--measure", type=Path, default=None, help="measure the cloaks saved in this folder")
    parser.add_argument("--spread", action="store_true", help="series by series (0, 5, 10...)")
    parser.add_argument("--blend", action="store_true", help="no cloak: blends toward the target, for scale")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.time_ensemble:
        time_ensemble(args)
    elif args.blend:
        blend_scale(args)
    else:
        efficacy(args)


if __name__ == "__main__":
    main()
