"""Plain log lines on stderr: journald and launchd capture them as they are."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str = "info") -> None:
    """One line per record; no timestamp under systemd, which adds its own."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(message)s" if under_journal else "%(asctime)s %(levelname)s %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries (open_clip logs to the root logger) only when something is wrong; our own
    # records at the configured level.
    root.setLevel(logging.WARNING)
    logging.getLogger("sfumato").setLevel(level.upper())
