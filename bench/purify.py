"""Whether a cloak survives the purifiers people run to wash cloaks out.

Cloak the shared Van Gogh paintings against effnet-lite:0 + effnet-lite:1, as ``bench/style.py``
(toward ``pixelart``) and ``bench/poison.py`` (poison toward ``purse``, style off) do, and put
each cloak through every purifier of ``sfumato.verify.purifiers``: AdverseCleaner's chain, noise +
JPEG 75, half-size + Lanczos + JPEG 75, noise + non-local means, and a TAEF2 round trip (when
../shared/models/taef2 exists). The held-out effnet-lite:2 judges.

- style: the projection shift of unit pooled features, measured from the *purified original*
  (the same purifier on the original): ((f(P(x')) - f(P(x))) · (f(t) - f(P(x)))) / |f(t) - f(P(x))|²,
  with t the pixelart original, so what a purifier does to any picture is not counted.
- poison: whether ``purse`` is among the held-out model's top 5 for P(x').

Per purifier: the mean (share of hits), PSNR, SSIM and ColorVideoVDP JOD of P(x') against the
original x (how much of the picture the purifier keeps) and the purifier's seconds per image; and
the mean of each image's worst case over the purifiers. Targets at ``default``: style, every
purifier's mean shift ≥ 0.35, the mean worst case ≥ 0.35 and ≥ 0.45 on the cloak itself; poison,
every purifier ≥ 80 % top-5, worst case ≥ 75 %, ≥ 90 % on the output.

    python bench/purify.py [--modes style,poison] [--limit N] [--start K] [--quality default]
    python bench/purify.py --save DIR | --measure DIR
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from PIL import Image

from _common import (
    SHARED,
    SURROGATES,
    add_saving,
    as_tensor,
    bench_options,
    bench_parser,
    cloaks,
    features,
    print_table,
    spread,
    to_array,
    to_image,
    transfer_encoders,
    vangogh_images,
)

TAEF2 = SHARED / "models" / "taef2"
ON_CLOAK = "cloak itself"


def purifiers() -> dict:
    """The package's purifiers, with TAEF2's round trip when its weights are there."""
    from sfumato.engine.cloak import load_encoders
    from sfumato.verify.purifiers import purifiers_for

    if not TAEF2.is_dir():
        print(f"note: {TAEF2} is absent, so the TAEF2 round trip is left out")
        return purifiers_for()
    (tae,) = load_encoders([f"tae:flux2@{TAEF2}"], torch.device("cpu"))
    return purifiers_for(tae)


class Judge:
    """The held-out model's verdict on one purified cloak: a shift (style) or a hit (poison)."""

    def __init__(self, held_out, mode: str, target: str) -> None:
        self.held_out, self.mode = held_out, mode
        if mode == "poison":
            self.index = [n.lower() for n in held_out.concept_vocabulary()].index(target.lower())

    def prepare(self, original: torch.Tensor) -> None:
        from sfumato.engine.image_ops import pixelart

        if self.mode == "style":
            self.target = features(self.held_out, pixelart(original))

    def __call__(self, purified_original: torch.Tensor, purified_cloak: torch.Tensor) -> float:
        if self.mode == "poison":
            from sfumato.engine.poison import TOP_K

            with torch.no_grad():
                top = self.held_out.logits(purified_cloak)[0].topk(TOP_K).indices.tolist()
            return float(self.index in top)
        from sfumato.engine.objectives import projection_shift

        moved, origin = features(self.held_out, purified_cloak), features(self.held_out, purified_original)
        return float(projection_shift(moved, origin, self.target)[0])


def picture_kept(original: Image.Image, purified: torch.Tensor) -> tuple[float, float, float]:
    """PSNR, SSIM and JOD of a purified cloak against the original (no SSIMULACRA2: it would
    double the time, and JOD already says how much of the picture is left)."""
    from sfumato.verify.figures import visual_change
    from sfumato.verify.visibility import jod

    after = to_image(purified)
    figures = visual_change(to_array(original), to_array(after))
    return (figures["psnr"] or float("inf"), figures["ssim"], jod(np.asarray(original), np.asarray(after)))


def run_mode(mode: str, args, surrogates, held_out, found: dict) -> None:
    if mode == "style":
        options = bench_options(args, style="pixelart", encoders=SURROGATES)
        paths = spread(vangogh_images())[args.start :][: args.limit]
    else:
        options = bench_options(args, style="none", poison=f"auto:{args.target}", encoders=SURROGATES)
        paths = vangogh_images(args.limit, args.start)
    judge = Judge(held_out, mode, args.target)
    scores: dict[str, list[float]] = {ON_CLOAK: [], **{name: [] for name in found}, "worst case": []}
    kept: dict[str, list[tuple[float, float, float]]] = {name: [] for name in found}
    seconds: dict[str, list[float]] = {name: [] for name in found}
    where = {key: getattr(args, key) / mode if getattr(args, key) else None for key in ("save", "measure")}
    for path, original, cloak, _, _ in cloaks(paths, options, surrogates, **where):
        x, c = as_tensor(original), as_tensor(cloak)
        judge.prepare(x)
        scores[ON_CLOAK].append(judge(x, c))
        for name, purifier in found.items():
            started = time.perf_counter()
            pc = purifier(c)
            seconds[name].append(time.perf_counter() - started)
            scores[name].append(judge(purifier(x), pc))
            kept[name].append(picture_kept(original, pc))
        scores["worst case"].append(min(scores[name][-1] for name in found))
        print(path.stem, *(f"{name} {v[-1]:.3f}" for name, v in scores.items()), flush=True)

    def figure(values: list[float]) -> str:
        return (
            f"{100 * statistics.mean(values):.0f}%" if mode == "poison" else f"{statistics.mean(values):.3f}"
        )

    rows = []
    for name, values in scores.items():
        quality = ["—"] * 4
        if name in found:
            psnrs, ssims, jods = zip(*kept[name], strict=True)
            quality = [
                f"{statistics.mean(psnrs):.2f}",
                f"{statistics.mean(ssims):.4f}",
                f"{statistics.mean(jods):.2f}",
                f"{statistics.mean(seconds[name]):.2f}",
            ]
        rows.append([name, str(len(values)), figure(values), *quality])
    measure = "top-5 hits" if mode == "poison" else "mean shift"
    print()
    print(f"{mode}: held-out {held_out.spec}, {args.intensity} intensity, {args.quality} quality")
    print_table(["after", "images", measure, "PSNR (dB)", "SSIM", "JOD", "purifier s/image"], rows)
    print()


def main() -> None:
    parser = bench_parser(__doc__, modes="style,poison", target="purse")
    add_saving(parser)
    args = parser.parse_args()
    surrogates, held_out = transfer_encoders(args.threads)
    if args.measure:
        surrogates = []
    found = purifiers()
    for name, purifier in found.items():
        print(f"{name}: {purifier.description}")
    print()
    for mode in args.modes.split(","):
        run_mode(mode.strip(), args, surrogates, held_out, found)


if __name__ == "__main__":
    main()
