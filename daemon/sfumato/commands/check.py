"""``sfumato check ORIGINAL CLOAKED``: what a cloak changed, and what models see in it."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sfumato.errors import ConfigError, UsageError
from sfumato.options import DEFAULT_CHECK, DEFAULT_ENCODERS, DEVICES

log = logging.getLogger(__name__)


def default_encoders() -> tuple[str, ...]:
    """The held-out verifier first, then the default cloak ensemble."""
    held_out = DEFAULT_CHECK.encoder
    return (held_out, *(e for e in DEFAULT_ENCODERS if e != held_out))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="measure a cloak: visual change and what models see",
        description="Compare a cloaked image with its original: the visual change (PSNR, SSIM, "
        "largest change, share of pixels changed, ColorVideoVDP and SSIMULACRA2 in words) and, per "
        "encoder, how far the cloak moved toward its target, on the image and after JPEG 75, a "
        "half-size resize, blur and a screenshot-like rescale, and after purifiers that try to "
        "wash cloaks out. Use encoders the cloak was not computed with to trust it.",
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
        help="the cloak's target style; auto (default): the target the daemon cloaked ORIGINAL "
        "toward, if its ledger knows the file, else the built-in style the image moved toward most",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the daemon's config file, to find its ledger (default: $SFUMATO_CONFIG or the "
        "platform's config file)",
    )
    p.add_argument("--poison", metavar="CONCEPT:TARGET", help="check a poison: the model should see TARGET")
    p.add_argument(
        "--purifier-vae",
        metavar="SPEC",
        help="also purify by an autoencoder round trip, e.g. tae:flux2@DIR (default: the first "
        "--encoder with a decoder, if any)",
    )
    p.add_argument("--no-purifiers", action="store_true", help="skip the purifiers")
    p.add_argument(
        "--no-visibility",
        action="store_true",
        help="skip ColorVideoVDP and SSIMULACRA2 (about 10 s a megapixel on a CPU)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--preview", type=Path, metavar="OUT.png", help="write a side-by-side preview picture")
    p.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where the encoders run: auto (default: a GPU if there is one, else the CPU), cpu, cuda or mps",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.set_defaults(func=run)


def daemon_target(original: Path, config: Path | None) -> str | None:
    """The target the daemon cloaked ``original`` toward, from its ledger (found by the file's
    hash, as the daemon found it); None for a file it never cloaked, or a poison-only cloak."""
    from sfumato.config import DaemonSettings, load_config
    from sfumato.config_file import config_path
    from sfumato.fileops import file_sha256
    from sfumato.ledger import LedgerReader

    path = config_path(config)
    if config is None and not path.is_file():
        state_dir = DaemonSettings().state_dir
    else:
        try:
            state_dir = load_config(path).daemon.state_dir
        except ConfigError as exc:
            if config is not None:
                raise
            log.warning("not asking the daemon's ledger for the target: %s", exc)
            return None
    reader = LedgerReader.open(state_dir)
    if reader is None:
        return None
    try:
        target = reader.cloaked_target(file_sha256(original))
    finally:
        reader.close()
    return None if target is None or target.strip().lower() == "none" else target


def check_purifiers(vae_spec: str | None, encoders: list, device) -> dict:
    """The classical purifiers, and the autoencoder round trip through ``vae_spec`` or else the
    first check encoder with a decoder."""
    from sfumato.engine.encoders import load_encoder
    from sfumato.verify.purifiers import purifiers_for

    vae = load_encoder(vae_spec, device) if vae_spec else next((e for e in encoders if e.has_decoder), None)
    if vae is not None and not vae.has_decoder:
        raise UsageError(f"--purifier-vae {vae_spec}: this encoder has no decoder to round-trip through")
    return purifiers_for(vae)


def run(args: argparse.Namespace) -> int:
    from sfumato.engine.cloak import load_encoders
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
    encoders = load_encoders(specs, device, skip_unavailable=not args.encoders, purpose="the check")
    report = {"original": str(args.original), "cloaked": str(args.cloaked)}
    style, known = args.style, None
    if not args.poison and (style or "auto").strip().lower() == "auto":
        known = daemon_target(args.original, args.config)  # what auto meant when it was cloaked
        style = known or style
    purifiers = {} if args.no_purifiers else check_purifiers(args.purifier_vae, encoders, device)
    report.update(
        check_images(
            original.rgb,
            cloaked.rgb,
            encoders,
            style=style,
            poison=args.poison,
            purifiers=purifiers,
            visibility=not args.no_visibility,
        )
    )
    if known:
        report["target_chosen"] = "auto: the target the daemon cloaked this original toward (its ledger)"
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
    seen = report.get("visibility")
    if seen and "error" in seen:
        lines.insert(1, f"visibility     not measured: {seen['error']}")
    elif seen:
        tiles = f", worst of {seen['tiles']} tiles" if seen["tiles"] > 1 else ""
        lines.insert(
            1,
            f"visibility     {seen['phrase']}  (ColorVideoVDP {seen['jod']:.2f} JOD on a 4K display, "
            f"SSIMULACRA2 {seen['ssimulacra2']:.1f}{tiles})",
        )
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
        lines += purifier_lines(entry)
    if report.get("latent_judge"):
        from sfumato.verify.judge.report import judge_lines

        lines += ["", *judge_lines(report["latent_judge"])]
    lines.append("")
    lines.append(
        "shift: share of the way from the original to the target a model sees the cloak moved "
        "(0 = not at all, 1 = all the way); x original, x′ cloaked, t target."
    )
    if report.get("purifiers"):
        lines.append(
            "after a purifier the shift is measured from the original put through the same purifier, "
            "so what it does to any picture is not counted."
        )
    if report.get("preview"):
        lines.append(f"preview written to {report['preview']}")
    return "\n".join(lines)


def purifier_lines(entry: dict) -> list[str]:
    """One encoder's rows after each purifier, and the worst."""
    rows = entry.get("purifiers")
    if not rows:
        return []
    poison = "hit" in next(iter(rows.values()))
    lines = [f"  {'purifier':<16} {'shift':>7}" + ("  target in top 5" if poison else "")]
    for name, row in rows.items():
        hit = row.get("hit")
        mark = "" if "hit" not in row else "  n/a" if hit is None else ("  yes" if hit else "  no")
        lines.append(f"  {name:<16} {row['shift']:>7.3f}{mark}")
    lines.append(f"  worst after a purifier: {entry['worst_purified_shift']:.3f} ({entry['worst_purifier']})")
    return lines
