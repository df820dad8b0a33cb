"""Transfer of the style cloak to a model the optimisation never sees.

Cloak the shared Van Gogh images toward ``pixelart`` against effnet-lite:0 + effnet-lite:1, then
measure with the held-out effnet-lite:2 the projection shift of unit pooled features
((f(x') - f(x)) · (f(t) - f(x))) / |f(t) - f(x)|², on the cloak, after JPEG 75 and after a
half-size resize, with mean PSNR. ``--set flat`` cloaks the photos with skies and the
flat-colour drawings of ``bench/visibility.py`` instead, where the budget map leaves flat colour
±1 level at ``default``: what protection keeping them clean costs.

    python bench/style.py [--set vangogh|flat] [--limit N] [--intensity default] [--quality default]
"""

from __future__ import annotations

from _common import (
    SURROGATES,
    as_tensor,
    bench_options,
    bench_parser,
    cloak_each,
    features,
    half_size,
    jpeg,
    mean,
    print_summary,
    transfer_encoders,
)
from _pictures import PICTURE_SETS


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--set", choices=sorted(PICTURE_SETS), default="vangogh", help="which pictures")
    args = parser.parse_args()

    from sfumato.engine.image_ops import pixelart
    from sfumato.engine.objectives import projection_shift

    surrogates, held_out = transfer_encoders(args.threads)
    options = bench_options(args, style="pixelart", encoders=SURROGATES)
    rows, shifts, psnrs, secs = [], {"cloak": [], "jpeg75": [], "half": []}, [], []
    images = PICTURE_SETS[args.set]()[args.start :][: args.limit]
    for path, original, result, seconds in cloak_each(images, options, surrogates):
        secs.append(seconds)
        cloaked = result.image
        fx = features(held_out, original)
        ft = features(held_out, pixelart(as_tensor(original)))
        for key, view in (("cloak", cloaked), ("jpeg75", jpeg(cloaked)), ("half", half_size(cloaked))):
            base = fx if key != "half" else features(held_out, half_size(original))
            shifts[key].append(float(projection_shift(features(held_out, view), base, ft)[0]))
        psnrs.append(result.report.psnr)
        rows.append([path.stem, *(f"{shifts[k][-1]:.3f}" for k in shifts), f"{psnrs[-1]:.2f}"])
        print(" ".join(rows[-1]), flush=True)
    print_summary(
        ["images", "shift on cloak", "after JPEG 75", "after half-size", "mean PSNR (dB)", "s/image"],
        [str(len(psnrs)), *(mean(v, 3) for v in shifts.values()), mean(psnrs, 2), mean(secs, 1)],
    )


if __name__ == "__main__":
    main()
