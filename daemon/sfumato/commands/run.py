"""``sfumato run``: the watched-folder daemon (README's second Quick start command)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sfumato.config import load_config
from sfumato.config_file import config_path, load_or_create

log = logging.getLogger("sfumato.daemon")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="watch the outbox folders and cloak each new image",
        description=(
            "Watch every configured outbox; cloak each new JPG/PNG into its ready folder and move "
            "the untouched original to originals. On first run, create the default config and "
            "folders."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SFUMATO_CONFIG or the platform's config folder)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="process the files waiting now, then exit (for cron and tests)",
    )
    parser.set_defaults(func=run)


def _lower_priority(nice: int) -> None:
    """Before any thread starts, so the search threads inherit it."""
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as exc:
            log.warning("could not lower the priority (nice %d): %s", nice, exc)


def run(args: argparse.Namespace) -> int:
    from sfumato.daemon import Daemon
    from sfumato.logs import setup_logging

    path = config_path(args.config)
    if args.config or os.environ.get("SFUMATO_CONFIG"):
        config, created = load_config(path), []  # a mistyped path must not start a new setup
    else:
        config, created = load_or_create(path)
    setup_logging(config.daemon.log_level)
    for line in created:
        print(f"sfumato: {line}", file=sys.stderr)
    if created:
        for folder in config.folders:
            print(
                f"sfumato: drop pictures into {folder.outbox}; cloaked copies appear in "
                f"{folder.ready}, originals are kept in {folder.originals}",
                file=sys.stderr,
            )
    _lower_priority(config.daemon.nice)
    return Daemon(config, config_path=path).run(once=args.once)
