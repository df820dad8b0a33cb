"""Transfer of the style cloak to a model the optimisation never sees.

Cloak the shared Van Gogh images toward ``pixelart`` against effnet-lite:0 + effnet-lite:1, then
measure with the held-out effnet-lite:2 the projection shift of unit pooled features
((f(x') - f(x)) · (f(t) - f(x))) / |f(t) - f(x)|², on the cloak, after JPEG 75 and after a
half-size resize, with mean PSNR.

    python bench/style.py [--limit N] [--intensity default] [--quality default]
"""

from __future__ import annotations

import argparse
import statistics
import time

from PIL import Image

from _common import half_size, jpeg, print_table, spread, to_array, vangogh_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--intensity", default="default")
    parser.add_argument("--quality", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch  # after _common, which sets how torch's threads wait

    from sfumato.engine.cloak import cloak_image, load_encoders
    from sfumato.engine.objectives import projection_shift, unit
    from sfumato.engine.stylizers import pixelart
    from sfumato.options import CloakOptions

    torch.set_num_threads(args.threads)
    surrogates = load_encoders(["effnet-lite:0", "effnet-lite:1"], torch.device("cpu"))
    (held_out,) = load_encoders(["effnet-lite:2"], torch.device("cpu"))

    def feat(image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(to_array(image)).permute(2, 0, 1)[None]
        with torch.no_grad():
            return unit(held_out.embed(x))

    options = CloakOptions(
        style="pixelart",
        intensity=args.intensity,
        quality=args.quality,
        steps=args.steps,
        encoders=("effnet-lite:0", "effnet-lite:1"),
        threads=args.threads,
    )
    rows, shifts, psnrs, secs = [], {"cloak": [], "jpeg75": [], "half": []}, [], []
    for path in spread(vangogh_images())[: args.limit]:
        original = Image.open(path).convert("RGB")
        started = time.perf_counter()
        result = cloak_image(original, options, encoders=surrogates)
        secs.append(time.perf_counter() - started)
        cloaked = result.image
        x = torch.from_numpy(to_array(original)).permute(2, 0, 1)[None]
        target = pixelart(x)
        fx = feat(original)
        ft = unit(held_out.embed(target))
        for key, view in (("cloak", cloaked), ("jpeg75", jpeg(cloaked)), ("half", half_size(cloaked))):
            base = fx if key != "half" else feat(half_size(original))
            shifts[key].append(float(projection_shift(feat(view), base, ft)[0]))
        psnrs.append(result.report["psnr"])
        rows.append([path.stem, *(f"{shifts[k][-1]:.3f}" for k in shifts), f"{psnrs[-1]:.2f}"])
        print(" ".join(rows[-1]), flush=True)
    print()
    print_table(
        ["images", "shift on cloak", "after JPEG 75", "after half-size", "mean PSNR (dB)", "s/image"],
        [
            [
                str(len(psnrs)),
                *(f"{statistics.mean(v):.3f}" for v in shifts.values()),
                f"{statistics.mean(psnrs):.2f}",
                f"{statistics.mean(secs):.1f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
