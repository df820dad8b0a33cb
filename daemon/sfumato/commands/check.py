"""``sfumato check ORIGINAL CLOAKED``: what a cloak changed, and what models see in it."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sfumato.errors import EncoderError, UsageError
from sfumato.options import DEFAULT_ENCODERS, DEVICES

log = logging.getLogger(__name__)


def default_encoders() -> tuple[str, ...]:
    """The held-out verifier first, then the default cloak ensemble."""
    from sfumato.verify.settings import DEFAULT_CHECK

    return (DEFAULT_CHECK["encoder"], *(e for e in DEFAULT_ENCODERS if e != DEFAULT_CHECK["encoder"]))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="measure a cloak: visual change and what models see",
        description="Compare a cloaked image with its original: the visual change (PSNR, SSIM, "
        "largest change, share of pixels changed) and, per encoder, how far the cloak moved "
        "toward its target, on the image and after JPEG 75, a half-size resize, blur and a "
        "screenshot-like rescale. Use encoders the cloak was not computed with to trust it.",
    )
    p.add_argument("original", type=Path, metavar="ORIGINAL")
    p.add_argument("cloaked", type=Path, metavar="CLOAKED")
    p.add_argument(
        "--encoder",
        action="append",
        dest="encoders",
        metavar="SPEC",
        help="encoder to measure with; repeat for several (default: effnet-lite:1 and the default "
        "cloak ensemble, leaving out any that cannot be loaded)",
    )
    p.add_argument(
        "--style",
        default="auto",
        metavar="TEXT|DIR|auto",
        help="the cloak's target style; auto (default) tries every built-in style and reports "
        "the one the image moved toward most",
    )
    p.add_argument("--poison", metavar="CONCEPT:TARGET", help="check a poison: the model should see TARGET")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--preview", type=Path, metavar="OUT.png", help="write a side-by-side preview picture")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.set_defaults(func=run)


def load_check_encoders(specs: tuple[str, ...], device, *, skip_unavailable: bool) -> list:
    from sfumato.engine.encoders import load_encoder

    loaded = []
    for spec in specs:
        try:
            loaded.append(load_encoder(spec, device))
        except EncoderError as exc:
            if not skip_unavailable:
                raise
            log.warning("leaving %s out of the check: %s", spec, exc)
    if not loaded:
        raise EncoderError(f"none of the encoders {', '.join(specs)} could be loaded")
    return loaded


def run(args: argparse.Namespace) -> int:
    from sfumato.engine.devices import pick_device, set_threads
    from sfumato.images import read_artwork
    from sfumato.verify.preview import build_preview, footer_phrases, write_preview
    from sfumato.verify.report import check_images, verdict_phrase

    original, cloaked = read_artwork(args.original), read_artwork(args.cloaked)
    if original.size != cloaked.size:
        raise UsageError(
            f"{args.cloaked} is {cloaked.size[0]}×{cloaked.size[1]} but {args.original} is "
            f"{original.size[0]}×{original.size[1]}: check compares a cloak with its own original"
        )
    set_threads(args.threads)
    device = pick_device(args.device)
    specs = tuple(args.encoders) if args.encoders else default_encoders()
    encoders = load_check_encoders(specs, device, skip_unavailable=not args.encoders)
    report = {"original": str(args.original), "cloaked": str(args.cloaked)}
    report.update(check_images(original.rgb, cloaked.rgb, encoders, style=args.style, poison=args.poison))
    if args.preview:
        usable = [e for e in report["encoders"] if "error" not in e]
        verdict = verdict_phrase(usable[0]) if usable else None
        image = build_preview(
            original.rgb, cloaked.rgb, footer_phrases(report, report["target"], verdict), encoders
        )
        report["preview"] = str(write_preview(image, args.preview))
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    """The report as a person reads it in a terminal."""
    psnr = "identical" if report["psnr"] is None else f"PSNR {report['psnr']:.2f} dB"
    lines = [
        f"visual change  {psnr}  SSIM {report['ssim']:.4f}  largest change {report['max_change']:g}/255  "
        f"{report['changed_share'] * 100:.1f}% of pixels changed",
        f"target         {report['target']}"
        + (f"  ({report['target_chosen']})" if report.get("target_chosen") else ""),
    ]
    header = (
        f"  {'after':<11} {'cos(x,t)':>8} {'cos(x′,t)':>9} {'cos(x′,x)':>9} {'shift':>7}"
        "  label before -> after"
    )
    for entry in report["encoders"]:
        lines.append("")
        if "error" in entry:
            lines.append(f"{entry['encoder']}: {entry['error']}")
            continue
        lines.append(
            f"{entry['encoder']}: shift {entry['shift']:.3f} on the image, worst {entry['worst_shift']:.3f}"
        )
        lines.append(header)
        for name, row in entry["transforms"].items():
            label = ""
            if row.get("label_before") is not None:
                label = f"{row['label_before']} -> {row['label_after']}"
            lines.append(
                f"  {name:<11} {row['cos_original_target']:>8.4f} {row['cos_cloaked_target']:>9.4f} "
                f"{row['cos_cloaked_original']:>9.4f} {row['shift']:>7.3f}  {label}"
            )
    lines.append("")
    lines.append(
        "shift: share of the way from the original to the target a model sees the cloak moved "
        "(0 = not at all, 1 = all the way); x original, x′ cloaked, t target."
    )
    if report.get("preview"):
        lines.append(f"preview written to {report['preview']}")
    return "\n".join(lines)
