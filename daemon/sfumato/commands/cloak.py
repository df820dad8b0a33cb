"""``sfumato cloak INPUT...``: cloak files once, from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from sfumato.commands.cloak_options import add_cloak_options, options_from
from sfumato.errors import SfumatoError, UsageError
from sfumato.image_names import is_image_name
from sfumato.options import CloakRequest


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
    add_cloak_options(p)
    p.add_argument(
        "--preview",
        action="store_true",
        help="also write <stem>.preview.png per image (original | cloaked | change, with figures)",
    )
    p.add_argument(
        "--preview-dir", type=Path, metavar="DIR", help="folder for the previews (default: OUTDIR)"
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    p.set_defaults(func=run)


def expand_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if is_image_name(p.name)))
        else:
            files.append(item)
    if not files:
        raise UsageError("no input images: the folders given hold no JPG or PNG files")
    return files


def run(args: argparse.Namespace) -> int:
    from sfumato.pipeline import Cloaker  # the engine pulls in torch: import only when needed

    options = options_from(args)
    files = expand_inputs(args.inputs)
    cloaker = Cloaker(device=options.device, threads=options.threads)
    cloaker.prepare(options)  # unknown or unavailable encoders fail here, once, before any file
    progress = None if args.json or not sys.stderr.isatty() else _progress_bar()
    failures = 0
    with progress or contextlib.nullcontext():
        for src in files:
            record = cloak_one(cloaker, src, args, options, progress)
            failures += record["status"] != "ok"
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                _say(record, progress)
    return 1 if failures else 0


def cloak_one(cloaker, src: Path, args: argparse.Namespace, options: CloakRequest, progress) -> dict:
    from sfumato.pipeline import cloak_record

    dst = args.output / src.name
    record = cloak_record(src, dst)
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
    record = cloak_record(src, outcome.output, status=outcome.status, report=outcome.report)
    if args.preview or args.preview_dir:
        from sfumato.verify.preview import preview_for_files

        folder = args.preview_dir or args.output
        report = outcome.report.to_json()
        shown = preview_for_files(src, outcome.output, report, folder, cloaker.encoders_for(options))
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
