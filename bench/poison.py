"""Transfer of poisoning to a classifier the optimisation never sees.

Poison the shared Van Gogh images toward an ImageNet class (``purse``) with effnet-lite:0 +
effnet-lite:1 as the optimisation ensemble (style cloak off, so the poison alone is measured), then
count how often the held-out effnet-lite:2 puts the target in its top 5: on the output, after JPEG
quality 75, a half-size resize, Gaussian blur σ=1, and a screenshot-like 1.5× rescale saved as
PNG; plus mean PSNR.

    python bench/poison.py [--limit N] [--start K] [--target purse] [--intensity default] [--quality default]
"""

from __future__ import annotations

import io
import statistics

import torch
from PIL import Image, ImageFilter

from _common import (
    SURROGATES,
    as_tensor,
    bench_options,
    bench_parser,
    cloak_each,
    half_size,
    jpeg,
    mean,
    print_summary,
    transfer_encoders,
    vangogh_images,
)


def blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=1))


def screenshot(image: Image.Image) -> Image.Image:
    """A 1.5× display rescale, captured losslessly as PNG."""
    big = image.resize((round(image.width * 1.5), round(image.height * 1.5)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "PNG")
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


TRANSFORMS = {
    "output": lambda image: image,
    "JPEG 75": jpeg,
    "half-size": half_size,
    "blur σ=1": blur,
    "screenshot 1.5×": screenshot,
}


def main() -> None:
    args = bench_parser(__doc__, target="purse").parse_args()

    from sfumato.engine.poison import TOP_K

    surrogates, held_out = transfer_encoders(args.threads)
    target = [n.lower() for n in held_out.concept_vocabulary()].index(args.target.lower())

    def hit(image: Image.Image) -> bool:
        with torch.no_grad():
            return target in held_out.logits(as_tensor(image))[0].topk(TOP_K).indices.tolist()

    options = bench_options(args, style="none", poison=f"auto:{args.target}", encoders=SURROGATES)
    hits: dict[str, list[bool]] = {name: [] for name in TRANSFORMS}
    before, surrogate, psnrs, secs = [], [], [], []
    images = vangogh_images(args.limit, args.start)
    for path, original, result, seconds in cloak_each(images, options, surrogates):
        secs.append(seconds)
        before.append(hit(original))
        for name, transform in TRANSFORMS.items():
            hits[name].append(hit(transform(result.image)))
        psnrs.append(result.report.psnr)
        surrogate.append(result.report.poison.targeted_success)
        marks = " ".join("x" if h[-1] else "." for h in hits.values())
        print(f"{path.stem}: {marks}  PSNR {psnrs[-1]:.2f}  {secs[-1]:.0f} s", flush=True)

    def share(values: list) -> str:
        return f"{100 * statistics.mean(values):.0f}%"

    print_summary(
        [
            "images",
            "held-out before",
            *(f"{k}" for k in TRANSFORMS),
            "surrogates",
            "mean PSNR (dB)",
            "s/image",
        ],
        [
            str(len(psnrs)),
            share(before),
            *(share(v) for v in hits.values()),
            share(surrogate),
            mean(psnrs, 2),
            mean(secs, 0),
        ],
    )


if __name__ == "__main__":
    main()
