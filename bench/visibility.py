"""How visible the cloak is: ColorVideoVDP and SSIMULACRA2 per image at each intensity.

Cloak two sets toward ``pixelart`` against effnet-lite:0 + effnet-lite:1 (``--encoder`` to change)
and measure each cloak against its original with ``sfumato.verify.visibility``: ColorVideoVDP's
JOD on a 4K monitor (``standard_4k``, 10 = no difference), SSIMULACRA2 (100 = identical), PSNR,
SSIM and the largest change. Sets: ``vangogh`` (the 20 shared paintings, 512²) and ``flat``
(photos with skies and smooth backgrounds, and flat-colour illustrations drawn by
``bench/_pictures.py``); ``--large 4,24`` adds both enlarged to 4 and 24 MP (slow: a 24 MP image
is measured in 2 MP tiles, the worst tile counting). Per-image rows, then per set and intensity
the means and minimums against the targets: at ``default`` every image at least 9.5 JOD and a
mean SSIMULACRA2 of 60 or more on each set; at ``low`` every image at least 9.8 JOD.

``--save DIR`` keeps the cloaks (DIR/INTENSITY/SET/NAME.png), ``--measure DIR`` measures them
again without cloaking. ``--reference`` instead measures JPEG quality 75 re-encoding of both sets
and Mist (ε 16) on the shared Monet, for scale.

    python bench/visibility.py [--sets vangogh,flat] [--limit N] [--intensities low,default]
                                [--quality default] [--large 4,24 [--large-only]]
    python bench/visibility.py --save DIR | --measure DIR
    python bench/visibility.py --reference
"""

from __future__ import annotations

import statistics
from pathlib import Path

from _common import (
    SHARED,
    SURROGATES,
    add_saving,
    bench_options,
    bench_parser,
    cloaks,
    jpeg,
    print_table,
    to_array,
)
from _pictures import PICTURE_SETS, enlarged

MIST = (
    SHARED / "data" / "peers" / "monet-woman-with-a-parasol.png",
    SHARED / "data" / "peers" / "monet-woman-with-a-parasol.mist-eps16.png",
)
# intensity -> (least JOD of every image, least mean SSIMULACRA2 of a set)
TARGETS = {"low": (9.8, None), "default": (9.5, 60.0)}
COLUMNS = [
    "set",
    "image",
    "MP",
    "intensity",
    "JOD",
    "SSIMULACRA2",
    "PSNR (dB)",
    "SSIM",
    "largest change",
    "s",
]


def image_sets(
    limit: int | None,
    start: int,
    large: list[int],
    names: tuple[str, ...] = ("vangogh", "flat"),
    large_only: bool = False,
) -> dict[str, list[Path]]:
    """``vangogh`` and ``flat`` (``start``/``limit`` apply to each), and their enlargements
    (only those with ``large_only``)."""
    base = {name: PICTURE_SETS[name]()[start:][:limit] for name in names}
    sets = {} if large_only else dict(base)
    for megapixels in large:
        for name in names:
            sets[f"{name}@{megapixels}MP"] = enlarged(base[name], megapixels)
    return sets


def row(set_name: str, path: Path, intensity: str, original, cloak, seconds: float) -> list:
    from sfumato.verify.visibility import measure_visibility

    seen = measure_visibility(to_array(original), to_array(cloak))
    return [
        set_name,
        path.stem,
        original.width * original.height / 1e6,
        intensity,
        seen.jod,
        seen.ssimulacra2,
        seen.psnr if seen.psnr is not None else float("inf"),
        seen.ssim,
        seen.max_change,
        seconds,
    ]


def text(cells: list) -> list[str]:
    formats = ["{}", "{}", "{:.1f}", "{}", "{:.2f}", "{:.1f}", "{:.2f}", "{:.4f}", "{:.0f}", "{:.0f}"]
    return [f.format(c) for f, c in zip(formats, cells, strict=True)]


def summary(rows: list[list]) -> None:
    """Per set and intensity: means, minimums, and the targets met or missed."""
    groups: dict[tuple[str, str], list[list]] = {}
    for r in rows:
        groups.setdefault((r[0], r[3]), []).append(r)
    table = []
    for (set_name, intensity), group in groups.items():
        jods, scores = [r[4] for r in group], [r[5] for r in group]
        least_jod, least_mean = TARGETS.get(intensity, (None, None))
        verdict = []
        if least_jod is not None:
            verdict.append(f"min JOD ≥ {least_jod}: {'met' if min(jods) >= least_jod else 'MISSED'}")
        if least_mean is not None:
            verdict.append(
                f"mean S2 ≥ {least_mean:g}: {'met' if statistics.mean(scores) >= least_mean else 'MISSED'}"
            )
        table.append(
            [
                set_name,
                intensity,
                str(len(group)),
                f"{statistics.mean(jods):.2f}",
                f"{min(jods):.2f}",
                f"{statistics.mean(scores):.1f}",
                f"{min(scores):.1f}",
                f"{statistics.mean(r[6] for r in group):.2f}",
                f"{statistics.mean(r[7] for r in group):.4f}",
                f"{max(r[8] for r in group):.0f}",
                "; ".join(verdict) or "—",
            ]
        )
    print()
    print_table(
        [
            "set",
            "intensity",
            "images",
            "mean JOD",
            "min JOD",
            "mean SSIMULACRA2",
            "min SSIMULACRA2",
            "mean PSNR (dB)",
            "mean SSIM",
            "largest change",
            "targets",
        ],
        table,
    )


def reference(sets: dict[str, list[Path]]) -> None:
    """JPEG 75 of every picture, and Mist ε16 on the shared Monet: cheap rows for scale."""
    from PIL import Image

    rows = []
    for set_name, paths in sets.items():
        for path in paths:
            original = Image.open(path).convert("RGB")
            rows.append(row(set_name, path, "JPEG 75", original, jpeg(original), float("nan")))
            print(" ".join(text(rows[-1])), flush=True)
    if all(p.is_file() for p in MIST):
        original, mist = (Image.open(p).convert("RGB") for p in MIST)
        rows.append(row("peers", MIST[0], "Mist ε16", original, mist, float("nan")))
        print(" ".join(text(rows[-1])), flush=True)
    summary(rows)


def main() -> None:
    parser = bench_parser(__doc__, intensities="low,default", large="")
    parser.add_argument("--encoder", action="append", dest="encoders", metavar="SPEC")
    parser.add_argument("--reference", action="store_true", help="JPEG 75 and Mist, no cloaks")
    parser.add_argument("--sets", default="vangogh,flat", help="which sets: vangogh, flat or both")
    parser.add_argument("--large-only", action="store_true", help="only the --large enlargements")
    add_saving(parser)
    args = parser.parse_args()
    large = [int(m) for m in args.large.split(",") if m.strip()]
    names = tuple(n.strip() for n in args.sets.split(","))
    sets = image_sets(args.limit, args.start, large, names, args.large_only)
    if args.reference:
        reference(sets)
        return

    import torch

    from sfumato.engine.cloak import load_encoders

    torch.set_num_threads(args.threads)
    specs = tuple(args.encoders or SURROGATES)
    encoders = [] if args.measure else load_encoders(list(specs), torch.device("cpu"))
    rows = []
    for intensity in args.intensities.split(","):
        args.intensity = intensity
        options = bench_options(args, style="pixelart", encoders=specs)
        for set_name, paths in sets.items():
            where = {
                key: getattr(args, key) / intensity / set_name if getattr(args, key) else None
                for key in ("save", "measure")
            }
            for path, original, cloak, _, seconds in cloaks(paths, options, encoders, **where):
                rows.append(row(set_name, path, intensity, original, cloak, seconds))
                print(" ".join(text(rows[-1])), flush=True)
    print()
    print_table(COLUMNS, [text(r) for r in rows])
    summary(rows)


if __name__ == "__main__":
    main()
