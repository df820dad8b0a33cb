"""The ``sfumato`` command: one sub-command per module in ``sfumato.commands``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from sfumato import __version__
from sfumato.errors import ConfigError, SfumatoError, UsageError
from sfumato.logs import setup_cli_logging

# Sub-command name -> module in sfumato.commands defining ``add_parser(subparsers)``; each parser
# sets ``func(args) -> int`` as its default.
COMMANDS = {
    "cloak": "cloak",
    "batch": "batch",
    "run": "run",
    "status": "status",
    "config": "config",
    "check": "check",
    "service": "service",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfumato",
        description="Cloak artwork against AI style mimicry before posting it online.",
    )
    parser.add_argument("--version", action="version", version=f"sfumato {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(f"sfumato.commands.{module_name}").add_parser(sub)
    return parser


# ``sfumato status | head``: the reader went away. As a process killed by SIGPIPE would report it.
BROKEN_PIPE_STATUS = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if args.command != "run":  # the daemon sets up its own log lines
        setup_cli_logging()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could only print a traceback
        return status
    except BrokenPipeError:
        _drop_stdout()
        return BROKEN_PIPE_STATUS
    except (UsageError, ConfigError) as exc:
        _report(exc)
        return 2
    except SfumatoError as exc:
        _report(exc)
        return 1
    except KeyboardInterrupt:
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture it)
        pass


def _report(exc: SfumatoError) -> None:
    """One line per problem; a config with several problems already names the file on each."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    for line in lines:
        print(line if len(lines) > 1 else f"sfumato: {line}", file=sys.stderr)
