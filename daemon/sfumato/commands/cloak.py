"""``sfumato cloak INPUT...``: cloak files once, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sfumato.errors import SfumatoError, UsageError
from sfumato.options import (
    DEFAULT_ENCODERS,
    DEVICES,
    METADATA_POLICIES,
    QUALITY_LEVELS,
    CloakOptions,
    parse_intensity,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cloak",
        help="cloak image files once",
        description="Cloak JPG/PNG files against AI style mimicry; the inputs are never modified.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=Path, help="image files or folders of them")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("cloaked"),
        metavar="OUTDIR",
        help="folder for the cloaked files (default: ./cloaked)",
    )
    p.add_argument(
        "--style",
        default="auto",
        metavar="TEXT|DIR|auto",
        help="built-in style (pixelart, popart, sketch, mosaic, halftone), free text, "
        "a folder of reference images, auto (default), or none (poison only)",
    )
    p.add_argument(
        "--poison",
        default=None,
        metavar="CONCEPT:TARGET",
        help="also poison: models trained on the output learn TARGET for what shows CONCEPT "
        "(either may be auto, e.g. auto:purse)",
    )
    p.add_argument(
        "--poison-anchors",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of images of the poison target, to anchor it beyond its name",
    )
    p.add_argument(
        "--intensity",
        default="default",
        metavar="LEVEL|NUMBER",
        help="low, default, high, max, or the largest change in 1/255 units",
    )
    p.add_argument("--quality", default="default", choices=QUALITY_LEVELS, help="how long the search runs")
    p.add_argument(
        "--encoder",
        action="append",
        dest="encoders",
        metavar="SPEC",
        help=f"encoder to optimise against; repeat for an ensemble (default: {' + '.join(DEFAULT_ENCODERS)})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--metadata",
        default="strip",
        choices=METADATA_POLICIES,
        help="strip (default: removes EXIF, GPS, XMP, text) or keep",
    )
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--preview",
        action="store_true",
        help="also write <stem>.preview.png per image (original | cloaked | change, with figures)",
    )
    p.add_argument(
        "--preview-dir", type=Path, metavar="DIR", help="folder for the previews (default: OUTDIR)"
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the quick check after each image (an image that changed nothing is still "
        "marked incomplete)",
    )
    p.add_argument(
        "--check-encoder", metavar="SPEC", help="encoder of the quick check (default: effnet-lite:1)"
    )
    p.add_argument(
        "--check-threshold",
        type=float,
        metavar="SHIFT",
        help="smallest shift toward the target (0-1) the quick check accepts",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    p.set_defaults(func=run)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(item)
    if not files:
        raise UsageError("no input images: the folders given hold no JPG or PNG files")
    return files


def options_from(args: argparse.Namespace) -> CloakOptions:
    try:
        intensity = parse_intensity(args.intensity)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return CloakOptions(
        style=args.style,
        intensity=intensity,
        quality=args.quality,
        encoders=tuple(args.encoders) if args.encoders else DEFAULT_ENCODERS,
        device=args.device,
        seed=args.seed,
        metadata=args.metadata,
        threads=args.threads,
        steps=args.steps,
        poison=poison_from(args),
        # The default ensemble goes on without a member that cannot be fetched (offline);
        # encoders the user named explicitly must all load.
        extra={
            "skip_unavailable_encoders": not args.encoders,
            "poison_anchors": args.poison_anchors,
            "check": {
                "enabled": not args.no_check,
                "encoder": args.check_encoder,
                "threshold": args.check_threshold,
            },
        },
    )


def poison_from(args: argparse.Namespace) -> str | None:
    """``--poison`` checked before any model loads; ``--poison-anchors`` needs it."""
    if args.poison is None:
        if args.poison_anchors is not None:
            raise UsageError("--poison-anchors needs --poison CONCEPT:TARGET")
        return None
    from sfumato.engine.poison import parse_poison

    request = parse_poison(args.poison)
    if args.poison_anchors is not None and not args.poison_anchors.is_dir():
        raise UsageError(f"poison anchor folder {args.poison_anchors} does not exist")
    return f"{request.concept}:{request.target}"


def run(args: argparse.Namespace) -> int:
    from sfumato.pipeline import Cloaker  # the engine pulls in torch: import only when needed

    options = options_from(args)
    files = expand_inputs(args.inputs)
    cloaker = Cloaker(device=args.device, threads=args.threads)
    cloaker.prepare(options)  # unknown or unavailable encoders fail here, once, before any file
    progress = None if args.json or not sys.stderr.isatty() else _progress_bar()
    failures = 0
    with progress or _nullcontext():
        for src in files:
            record = cloak_one(cloaker, src, args, options, progress)
            failures += record["status"] != "ok"
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                _say(record, progress)
    return 1 if failures else 0


def cloak_one(cloaker, src: Path, args: argparse.Namespace, options: CloakOptions, progress) -> dict:
    dst = args.output / src.name
    record = {
        "input": str(src),
        "output": str(dst),
        "status": "failed",
        "error": None,
        "target": None,
        "psnr": None,
        "ssim": None,
        "seconds": None,
    }
    task = progress.add_task(src.name, total=1.0) if progress else None
    try:
        if dst.resolve() == src.resolve():
            raise UsageError(f"{src}: the output would overwrite the input; choose another -o folder")
        if not src.is_file():
            raise UsageError(f"{src}: no such file")
        outcome = cloaker.cloak_file(
            src,
            dst,
            options,
            overwrite=args.force,
            progress=(lambda f: progress.update(task, completed=f)) if progress else None,
        )
    except SfumatoError as exc:
        record["error"] = str(exc)
        return record
    finally:
        if progress:
            progress.remove_task(task)
    record.update(outcome.report)
    record.update(status=outcome.status, error=None, output=str(outcome.output))
    if args.preview or args.preview_dir:
        from sfumato.verify.preview import preview_for_files

        folder = args.preview_dir or args.output
        shown = preview_for_files(src, outcome.output, outcome.report, folder, cloaker.encoders_for(options))
        record["preview"] = str(shown)
    return record


def _say(record: dict, progress) -> None:
    if record["status"] == "ok":
        line = (
            f"ok      {record['input']} -> {record['output']}  PSNR {record['psnr']:.1f} dB  "
            f"SSIM {record['ssim']:.3f}  target {record['target']}  {record['seconds']:.1f} s"
        )
    elif record["status"] == "incomplete":
        line = f"INCOMPLETE {record['input']} -> {record['output']}  {record.get('reason')}"
    else:
        line = f"failed  {record['error']}"
    if progress:
        progress.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr, flush=True)


def _progress_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
