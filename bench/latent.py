"""Style cloak in FLUX.2's latent space (``tae:flux2``), white-box.

Cloak the shared Van Gogh images toward ``pixelart`` against TAEF2, then measure the projection
shift of flattened unit latents ((z(x') - z(x)) · (z(t) - z(x))) / |z(t) - z(x)|², with t the
pixelart version of the original, on the cloak and after JPEG 75, with PSNR, SSIM and seconds.
``--time-ensemble`` instead times the default ensemble with and without TAEF2 on one 4 MP image.

    python bench/latent.py [--limit N] [--start K] [--intensity default] [--quality default]
    python bench/latent.py --time-ensemble
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    vangogh_images,
)

TAEF2 = f"tae:flux2@{SHARED / 'models' / 'taef2'}"
# The default ensemble with random ViT-B-32 weights: the same cost, no download.
ENSEMBLE = ("openclip:ViT-B-32/random", "effnet-lite:0")


def efficacy(args: argparse.Namespace) -> None:
    from sfumato.engine.cloak import load_encoders
    from sfumato.engine.objectives import projection_shift
    from sfumato.engine.stylizers import pixelart

    (tae,) = load_encoders([TAEF2], torch.device("cpu"))
    options = bench_options(args, style="pixelart", encoders=(TAEF2,), device="cpu")
    keys = ("cloak", "jpeg75")
    shifts: dict[str, list[float]] = {k: [] for k in keys}
    psnrs, ssims, secs = [], [], []
    for path, original, result, seconds in cloak_each(vangogh_images(args.limit, args.start), options, [tae]):
        secs.append(seconds)
        x = as_tensor(original)
        zx, zt = features(tae, x), features(tae, pixelart(x))
        for key, view in zip(keys, (result.image, jpeg(result.image)), strict=True):
            shifts[key].append(float(projection_shift(features(tae, view), zx, zt)[0]))
        psnrs.append(result.report["psnr"])
        ssims.append(result.report["ssim"])
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            result.image.save(args.save / f"{path.stem}.png")
        print(
            path.stem,
            *(f"{shifts[k][-1]:.3f}" for k in keys),
            f"{psnrs[-1]:.2f}",
            f"{ssims[-1]:.4f}",
            f"{secs[-1]:.1f}s",
            flush=True,
        )
    print_summary(
        ["images", "shift on cloak", "after JPEG 75", "mean PSNR (dB)", "mean SSIM", "s/image"],
        [str(len(psnrs)), *(mean(shifts[k], 3) for k in keys), mean(psnrs, 2), mean(ssims, 4), mean(secs, 1)],
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
            [names, f"{per_step:.2f}", f"{fixed:.1f}", f"{totals[-1]:.0f}", f"{result.report['psnr']:.2f}"]
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (time_ensemble if args.time_ensemble else efficacy)(args)


if __name__ == "__main__":
    main()
