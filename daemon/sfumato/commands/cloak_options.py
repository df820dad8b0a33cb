"""The options every command that cloaks takes (``cloak``, ``batch``), parsed once into CloakOptions."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfumato.errors import UsageError
from sfumato.options import (
    DEFAULT_ENCODERS,
    DEVICES,
    METADATA_POLICIES,
    QUALITY_LEVELS,
    CloakOptions,
    parse_intensity,
)


def add_cloak_options(p: argparse.ArgumentParser) -> None:
    """How each image is cloaked: style, poison, intensity, quality, encoders, device, check."""
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
