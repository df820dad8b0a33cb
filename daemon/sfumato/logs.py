"""Plain log lines on stderr: journald and launchd capture them as they are.

One record is one line: a file name holding a line break (or another control character) could
otherwise forge log lines, so names are quoted where they are shown (:func:`quoted`) and every
message is escaped by the handler as a last resort.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def quoted(name: object) -> str:
    """A file name as a log line shows it: as it is, or JSON-quoted when it holds a control
    character (``"a\\nb.png"``) or starts with a quote, so it can neither split nor forge a line."""
    text = str(name)
    if _CONTROL.search(text) or text.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _escape(match: re.Match) -> str:
    return json.dumps(match.group())[1:-1]


class _OneLine(logging.Filter):
    """Escapes control characters in the message (a traceback, added later, keeps its lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _CONTROL.search(message):
            record.msg, record.args = _CONTROL.sub(_escape, message), None
        return True


def setup_logging(level: str = "info") -> None:
    """One line per record; no timestamp under systemd, which adds its own."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(message)s" if under_journal else "%(asctime)s %(levelname)s %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_OneLine())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries (open_clip logs to the root logger) only when something is wrong; our own
    # records at the configured level.
    root.setLevel(logging.WARNING)
    logging.getLogger("sfumato").setLevel(level.upper())


class _CliHandler(logging.StreamHandler):
    """Installed once by :func:`setup_cli_logging`; writes to whatever ``sys.stderr`` is now."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_cli_logging() -> None:
    """For the commands other than ``run``: our own warnings as ``sfumato: ...`` lines on stderr,
    library chatter (open_clip's "No pretrained weights loaded", Python warnings) not at all.

    Without a handler, the first ``logging.warning`` of a library configures the root logger
    itself and prints ``WARNING:root:...`` and ``WARNING:sfumato.commands.check:...`` lines.
    """
    root = logging.getLogger()
    if not any(isinstance(h, _CliHandler) for h in root.handlers):
        handler = _CliHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("sfumato: %(message)s"))
        handler.addFilter(_OneLine())
        root.addHandler(handler)
    root.setLevel(logging.ERROR)
    logging.getLogger("sfumato").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # to the "py.warnings" logger, below the root's level
