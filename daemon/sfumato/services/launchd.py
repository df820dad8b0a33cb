"""The launchd LaunchAgent: the plist (escaped by plistlib, not by hand) and its plans."""

from __future__ import annotations

import os
import plistlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfumato.services.steps import MakeDir, RemoveFile, Run, Runner, Step, WriteFile
from sfumato.services.templates import LAUNCHD_PLIST, Placeholders, template_bytes

LABEL = "org.sfumato.daemon"
LAUNCHCTL = "launchctl"
NO_GUI_SESSION = "launchd agents start only for a user logged in to the Mac's desktop"


def _fill(value: Any, program: Sequence[str], values: dict[str, str]) -> Any:
    """Substitute placeholders in every string; an array item ``@{program}`` becomes ``program``."""
    if isinstance(value, str):
        return Placeholders(value).substitute(values)
    if isinstance(value, list):
        filled: list[Any] = []
        for item in value:
            if item == "@{program}":
                filled.extend(program)
            else:
                filled.append(_fill(item, program, values))
        return filled
    if isinstance(value, dict):
        return {key: _fill(item, program, values) for key, item in value.items()}
    return value


def render_plist(program: Sequence[str], config: Path, log_file: Path) -> bytes:
    """The LaunchAgent that runs ``<program> run --config <config>``, logging to ``log_file``."""
    template = plistlib.loads(template_bytes(LAUNCHD_PLIST))
    filled = _fill(template, program, {"config": str(config), "log_file": str(log_file)})
    return plistlib.dumps(filled, sort_keys=False)


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def _domain() -> str:
    return f"gui/{os.getuid()}"


def _service() -> str:
    return f"{_domain()}/{LABEL}"


def install_steps(
    program: Sequence[str], config: Path, log_file: Path, prepare: Sequence[Step] = ()
) -> list[Step]:
    """``prepare`` runs before the plist is written."""
    path = plist_path()
    return [
        *prepare,
        MakeDir(log_file.parent),  # launchd does not create the log folder
        WriteFile(path, render_plist(program, config, log_file)),
        Run((LAUNCHCTL, "bootout", _service()), may_fail=True),  # an older install, if loaded
        Run((LAUNCHCTL, "enable", _service())),  # undo an earlier `launchctl disable`
        Run(
            (LAUNCHCTL, "bootstrap", _domain(), str(path)),
            failure="launchd did not load sfumato",
            hint=NO_GUI_SESSION,
        ),
    ]


def uninstall_steps() -> list[Step]:
    return [
        Run((LAUNCHCTL, "bootout", _service()), may_fail=True),
        RemoveFile(plist_path()),
    ]


def status(runner: Runner, log_file: Path) -> tuple[bool, str]:
    """Whether the agent runs, from ``launchctl print``'s ``state = ...`` line."""
    result = runner((LAUNCHCTL, "print", _service()))
    if result.returncode != 0:
        if plist_path().exists():
            return False, f"sfumato is installed but not loaded ({NO_GUI_SESSION})"
        return False, "sfumato is not installed as a service (see `sfumato service install`)"
    match = re.search(r"^\s*state = (\S+)", result.stdout, re.MULTILINE)
    state = match.group(1) if match else "unknown"
    if state == "running":
        return True, "sfumato is running"
    return False, f"sfumato is loaded but {state}, not running (see {log_file})"
