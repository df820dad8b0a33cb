"""``sfumato batch SRC DST``: a whole folder tree cloaked on Ray, on this machine or a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfumato.commands.cloak_options import add_cloak_options, options_from
from sfumato.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="cloak a whole folder tree on Ray (this machine or a cluster)",
        description="Cloak every JPG/PNG under SRC into the same tree under DST, with a manifest "
        "of one report per file; a rerun finishes what is left. The inputs are never modified.",
    )
    p.add_argument("src", type=Path, metavar="SRC", help="folder tree of images")
    p.add_argument("dst", type=Path, metavar="DST", help="folder for the cloaked tree and its manifest")
    p.add_argument(
        "--ray",
        default=None,
        metavar="auto|ADDRESS",
        help="join a running Ray cluster (auto: the one started on this machine; or HEAD:PORT); "
        "default: a private Ray on this machine",
    )
    p.add_argument("--workers", type=int, default=None, help="actors (default: as many as fit)")
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        metavar="C",
        help="CPUs each worker reserves, and its torch threads (default: 1)",
    )
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        metavar="F",
        help="GPUs each worker reserves (e.g. 0.5: two workers share one); default: CPU workers",
    )
    add_cloak_options(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a DST that holds files but no manifest (same names are overwritten)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per finished file on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sfumato.batch.progress import reporter
    from sfumato.batch.runner import BatchConfig, run_batch

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.cpus_per_worker < 0 or args.gpus_per_worker < 0:
        raise UsageError("--cpus-per-worker and --gpus-per-worker cannot be negative")
    if not args.src.is_dir():
        raise UsageError(f"{args.src} is not a folder: sfumato batch takes a folder tree of images")
    from sfumato.batch.cluster import import_ray

    import_ray()  # without the extra, say how to get it before anything else happens
    config = BatchConfig(
        src=args.src,
        dst=args.dst,
        options=options_from(args),
        address=args.ray,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        force=args.force,
    )
    with reporter(args.json) as shown:
        counts = run_batch(config, shown)
    return 1 if counts.not_ok else 0
