"""Transfer of poisoning to a classifier the optimisation never sees.

Poison the shared Van Gogh images toward an ImageNet class (``purse``) with effnet-lite:0 +
effnet-lite:1 as the optimisation ensemble (style cloak off, so the poison alone is measured), then
count how often the held-out effnet-lite:2 puts the target in its top 5: on the output, after JPEG
quality 75, a half-size resize, Gaussian blur σ=1, and a screenshot-like 1.5× rescale saved as
PNG; plus mean PSNR.

    python bench/poison.py [--limit N] [--target purse] [--intensity default] [--quality default]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch
from PIL import Image, ImageFilter

from _common import half_size, jpeg, print_table, to_array, vangogh_images


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--target", default="purse")
    parser.add_argument("--intensity", default="default")
    parser.add_argument("--quality", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from sfumato.engine.cloak import cloak_image, load_encoders
    from sfumato.engine.poison import TOP_K
    from sfumato.options import CloakOptions

    torch.set_num_threads(args.threads)
    surrogates = load_encoders(["effnet-lite:0", "effnet-lite:1"], torch.device("cpu"))
    (held_out,) = load_encoders(["effnet-lite:2"], torch.device("cpu"))
    target = [n.lower() for n in held_out.concept_vocabulary()].index(args.target.lower())

    def hit(image: Image.Image) -> bool:
        x = torch.from_numpy(to_array(image)).permute(2, 0, 1)[None]
        with torch.no_grad():
            return target in held_out.logits(x)[0].topk(TOP_K).indices.tolist()

    options = CloakOptions(
        style="none",
        poison=f"auto:{args.target}",
        intensity=args.intensity,
        quality=args.quality,
        steps=args.steps,
        encoders=("effnet-lite:0", "effnet-lite:1"),
        threads=args.threads,
    )
    hits: dict[str, list[bool]] = {name: [] for name in TRANSFORMS}
    before, surrogate, psnrs, secs = [], [], [], []
    for path in vangogh_images(args.limit):
        original = Image.open(path).convert("RGB")
        started = time.perf_counter()
        result = cloak_image(original, options, encoders=surrogates)
        secs.append(time.perf_counter() - started)
        before.append(hit(original))
        for name, transform in TRANSFORMS.items():
            hits[name].append(hit(transform(result.image)))
        psnrs.append(result.report["psnr"])
        surrogate.append(result.report["poison"]["targeted_success"])
        marks = " ".join("x" if h[-1] else "." for h in hits.values())
        print(f"{path.stem}: {marks}  PSNR {psnrs[-1]:.2f}  {secs[-1]:.0f} s", flush=True)

    def share(values: list) -> str:
        return f"{100 * statistics.mean(values):.0f}%"

    print()
    print_table(
        [
            "images",
            "held-out before",
            *(f"{k}" for k in TRANSFORMS),
            "surrogates",
            "mean PSNR (dB)",
            "s/image",
        ],
        [
            [
                str(len(psnrs)),
                share(before),
                *(share(v) for v in hits.values()),
                share(surrogate),
                f"{statistics.mean(psnrs):.2f}",
                f"{statistics.mean(secs):.0f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
