"""The options every command that cloaks takes (``cloak``, ``batch``), parsed once into a CloakRequest."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from sfumato.config import Defaults, load_config
from sfumato.config_file import config_path
from sfumato.errors import UsageError
from sfumato.options import (
    DEFAULT_ENCODERS,
    DEFAULT_INTENSITY,
    DEFAULT_QUALITY,
    DEVICES,
    INTENSITY_LEVELS,
    METADATA_POLICIES,
    QUALITY_LEVELS,
    CheckRequest,
    CloakRequest,
    parse_intensity,
)
from sfumato.specs import PoisonRequest, parse_encoder, parse_poison


def add_cloak_options(p: argparse.ArgumentParser) -> None:
    """How each image is cloaked: style, poison, intensity, quality, encoders, device, check."""
    p.add_argument(
        "--style",
        default=None,
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
        default=None,
        metavar="LEVEL|NUMBER",
        help=f"{', '.join(INTENSITY_LEVELS)}, or the largest change in 1/255 units "
        f"(default: {DEFAULT_INTENSITY})",
    )
    p.add_argument(
        "--quality",
        default=None,
        choices=QUALITY_LEVELS,
        help=f"how long the search runs (default: {DEFAULT_QUALITY})",
    )
    p.add_argument(
        "--encoder",
        action="append",
        dest="encoders",
        metavar="SPEC",
        help=f"encoder to optimise against; repeat for an ensemble (default: {' + '.join(DEFAULT_ENCODERS)})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the search's random views: the same seed and settings give the same cloak (default: 0)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=DEVICES,
        help="where the search runs: auto (default: a GPU if there is one, else the CPU), cpu, cuda or mps",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--metadata",
        default=None,
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
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="config file whose [defaults] the flags override (default: $SFUMATO_CONFIG or the "
        "platform's config file, where one exists)",
    )


def file_defaults(args: argparse.Namespace) -> Defaults:
    """The config file's ``[defaults]``, which a user of both the daemon and the CLI expects the
    CLI to start from; built-in defaults where there is no config file."""
    path = config_path(args.config)
    if args.config is None and not path.is_file():
        return Defaults()
    return load_config(path).defaults


def options_from(args: argparse.Namespace) -> CloakRequest:
    """The flags given, over the config file's ``[defaults]``; a key neither sets keeps
    :class:`CloakRequest`'s own default."""
    defaults = file_defaults(args)
    in_file = defaults.model_fields_set
    chosen: dict[str, Any] = {}
    for name in ("style", "intensity", "quality", "device", "seed", "metadata", "threads", "steps"):
        flag = getattr(args, name)
        if flag is not None:
            chosen[name] = flag
        elif name in in_file and getattr(defaults, name) is not None:
            chosen[name] = getattr(defaults, name)
    try:
        chosen["intensity"] = parse_intensity(chosen.get("intensity", DEFAULT_INTENSITY))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for spec in (*(args.encoders or ()), *([args.check_encoder] if args.check_encoder else [])):
        parse_encoder(spec)  # an unknown kind or model family fails before any model loads
    if args.encoders:
        encoders, skip = tuple(args.encoders), False  # encoders named on the command line must all load
    elif "encoders" in in_file:
        encoders, skip = tuple(defaults.encoders), defaults.skip_unavailable_encoders
    else:
        # The default ensemble goes on without a member that cannot be fetched (offline).
        encoders, skip = DEFAULT_ENCODERS, True
    check = CheckRequest(
        enabled=False if args.no_check else None, encoder=args.check_encoder, threshold=args.check_threshold
    )
    if "check" in in_file:
        check = check.over(defaults.check.request())
    if check.enabled is None:
        check = dataclasses.replace(check, enabled=True)
    return CloakRequest(
        **chosen,
        encoders=encoders,
        poison=poison_from(args),
        skip_unavailable_encoders=skip,
        poison_anchors=args.poison_anchors,
        check=check,
    )


def poison_from(args: argparse.Namespace) -> PoisonRequest | None:
    """``--poison`` checked before any model loads; ``--poison-anchors`` needs it."""
    if args.poison is None:
        if args.poison_anchors is not None:
            raise UsageError("--poison-anchors needs --poison CONCEPT:TARGET")
        return None
    request = parse_poison(args.poison)
    if args.poison_anchors is not None and not args.poison_anchors.is_dir():
        raise UsageError(f"poison anchor folder {args.poison_anchors} does not exist")
    return request
