"""The steps of an install or uninstall, shown by ``--dry-run`` and carried out otherwise.

Commands are argument lists handed to ``subprocess.run`` without a shell; ``shlex.join`` is only
used to display them, so paths with spaces or quotes never need escaping.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sfumato.errors import SfumatoError
from sfumato.fileops import atomic_write_bytes, fsync_dir

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class ServiceError(SfumatoError):
    """The service manager cannot be reached or refused a command (exit status 1)."""


@dataclass(frozen=True)
class MakeDir:
    path: Path


@dataclass(frozen=True)
class WriteFile:
    path: Path
    data: bytes


@dataclass(frozen=True)
class RemoveFile:
    path: Path


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    may_fail: bool = False  # e.g. stopping a service that is not loaded
    failure: str = ""  # what a failure means, instead of "<command> failed"
    hint: str = ""  # what to do when it fails, appended to the error sentence


@dataclass(frozen=True)
class Call:
    """A step done in Python, e.g. the first-run config setup; returns lines to report."""

    description: str  # shown after "would "
    action: Callable[[], list[str]]


Step = MakeDir | WriteFile | RemoveFile | Run | Call


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real runner: no shell, output captured so failures can be reported in one sentence."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ServiceError(f"{argv[0]} was not found; is this the right --platform?") from exc


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or "").strip() or (result.stdout or "").strip()
    return text.splitlines()[0] if text else f"exit status {result.returncode}"


def show(steps: Iterable[Step], out: TextIO) -> None:
    """Print every file a plan would write, in full, and every command it would run."""
    for step in steps:
        if isinstance(step, MakeDir):
            print(f"would create the folder {step.path}", file=out)
        elif isinstance(step, WriteFile):
            print(f"would write {step.path}:", file=out)
            text = step.data.decode("utf-8")
            print(text, end="" if text.endswith("\n") else "\n", file=out)
        elif isinstance(step, RemoveFile):
            print(f"would remove {step.path}", file=out)
        elif isinstance(step, Call):
            print(f"would {step.description}", file=out)
        else:
            note = "  (allowed to fail)" if step.may_fail else ""
            print(f"would run: {shlex.join(step.argv)}{note}", file=out)


def carry_out(steps: Iterable[Step], runner: Runner, out: TextIO) -> None:
    """Do each step and say so; stop at the first command that fails unless it may fail."""
    for step in steps:
        if isinstance(step, MakeDir):
            step.path.mkdir(parents=True, exist_ok=True)
        elif isinstance(step, WriteFile):
            atomic_write_bytes(step.path, step.data)
            print(f"wrote {step.path}", file=out)
        elif isinstance(step, RemoveFile):
            with contextlib.suppress(FileNotFoundError):
                step.path.unlink()
                fsync_dir(step.path.parent)
                print(f"removed {step.path}", file=out)
        elif isinstance(step, Call):
            for line in step.action():
                print(line, file=out)
        else:
            result = runner(step.argv)
            if result.returncode != 0 and not step.may_fail:
                failure = step.failure or f"{shlex.join(step.argv)} failed"
                hint = f"; {step.hint}" if step.hint else ""
                raise ServiceError(f"{failure} ({first_line(result)}){hint}")
            print(f"ran: {shlex.join(step.argv)}", file=out)
