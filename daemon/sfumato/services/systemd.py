"""The systemd user unit: rendering it with systemd's quoting, and the install/uninstall plans."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from platformdirs.unix import Unix

from sfumato.services.steps import (
    MakeDir,
    RemoveFile,
    Run,
    Runner,
    ServiceError,
    Step,
    WriteFile,
    first_line,
)
from sfumato.services.templates import SYSTEMD_UNIT, Placeholders, template_bytes

UNIT_NAME = SYSTEMD_UNIT
SYSTEMCTL = ("systemctl", "--user")
ENV = "/usr/bin/env"
UNREACHABLE = "cannot reach the systemd user manager"
NO_USER_MANAGER = (
    "log in to a desktop or SSH session of this user (or run `loginctl enable-linger` once so "
    "the user manager runs without a login) and try again"
)

# systemd refuses an executable whose path holds quotes, backslashes or control characters.
_UNSAFE_EXECUTABLE = re.compile(r"[\"'\\\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote_word(word: str, *, executable: bool = False) -> str:
    """One ExecStart word, quoted so that systemd hands the program exactly ``word``.

    Inside double quotes systemd undoes C escapes (``\\\\``, ``\\"``, ``\\n``...), then expands
    ``%`` specifiers in every word and ``$VARIABLES`` in arguments, so those are doubled.
    """
    if "\0" in word:
        raise ServiceError(f"a service command cannot contain a NUL character: {word!r}")
    text = word.replace("\\", "\\\\").replace('"', '\\"')
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    text = text.replace("%", "%%")
    if not executable:
        text = text.replace("$", "$$")
    return f'"{text}"'


def exec_words(program: Sequence[str]) -> list[str]:
    """``program`` as ExecStart words, started through env(1) if systemd would refuse its path."""
    argv = list(program)
    if not argv[0].startswith("/"):
        raise ServiceError(f"the service needs an absolute path to sfumato, not {argv[0]!r}")
    if _UNSAFE_EXECUTABLE.search(argv[0]):
        if "=" in argv[0]:
            raise ServiceError(
                f"systemd cannot start {argv[0]!r}: move sfumato to a path without quotes, backslashes or '='"
            )
        argv = [ENV, *argv]
    return [quote_word(argv[0], executable=True), *(quote_word(a) for a in argv[1:])]


def documentation_urls() -> list[str]:
    """The project URLs from the installed package's metadata (none in a bare checkout)."""
    try:
        meta = metadata.metadata("sfumato")
    except metadata.PackageNotFoundError:
        return []
    urls = [entry.split(",", 1)[-1].strip() for entry in meta.get_all("Project-URL") or []]
    if meta.get("Home-page"):
        urls.insert(0, meta["Home-page"])
    return [url for url in dict.fromkeys(urls) if url.startswith(("http://", "https://"))]


def render_unit(program: Sequence[str], config: Path) -> str:
    """The unit file text that runs ``<program> run --config <config>``."""
    template = Placeholders(template_bytes(SYSTEMD_UNIT).decode("utf-8"))
    text = template.substitute(
        program=" ".join(exec_words(program)),
        config=quote_word(str(config)),
        documentation=" ".join(url.replace("%", "%%") for url in documentation_urls()),
    )
    return "".join(line for line in text.splitlines(keepends=True) if line != "Documentation=\n")


def unit_path() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user/sfumato.service`` (``~/.config`` by default)."""
    return Unix().user_config_path / "systemd" / "user" / UNIT_NAME


def install_steps(program: Sequence[str], config: Path, prepare: Sequence[Step] = ()) -> list[Step]:
    """``prepare`` runs once the user manager is known to be reachable, before the unit exists."""
    path = unit_path()
    return [
        Run((*SYSTEMCTL, "show-environment"), failure=UNREACHABLE, hint=NO_USER_MANAGER),
        *prepare,
        MakeDir(path.parent),
        WriteFile(path, render_unit(program, config).encode("utf-8")),
        Run((*SYSTEMCTL, "daemon-reload")),
        Run((*SYSTEMCTL, "enable", UNIT_NAME)),
        Run((*SYSTEMCTL, "restart", UNIT_NAME)),  # starts it, or restarts an older install
    ]


def uninstall_steps() -> list[Step]:
    return [
        Run((*SYSTEMCTL, "show-environment"), failure=UNREACHABLE, hint=NO_USER_MANAGER),
        Run((*SYSTEMCTL, "disable", "--now", UNIT_NAME), may_fail=True),
        RemoveFile(unit_path()),
        Run((*SYSTEMCTL, "daemon-reload")),
        Run((*SYSTEMCTL, "reset-failed", UNIT_NAME), may_fail=True),
    ]


def status(runner: Runner) -> tuple[bool, str]:
    """Whether the service runs, and one sentence saying so (with the daemon's STATUS= line)."""
    result = runner((*SYSTEMCTL, "is-active", UNIT_NAME))
    state = result.stdout.strip()
    if not state:
        raise ServiceError(f"cannot reach the systemd user manager ({first_line(result)}); {NO_USER_MANAGER}")
    if state == "active":
        shown = runner((*SYSTEMCTL, "show", "--property=StatusText", "--value", UNIT_NAME))
        detail = shown.stdout.strip() if shown.returncode == 0 else ""
        return True, "sfumato is running" + (f": {detail}" if detail else "")
    if not unit_path().exists():
        return False, "sfumato is not installed as a service (see `sfumato service install`)"
    return False, f"sfumato is {state}, not running (see `journalctl --user -u sfumato`)"
