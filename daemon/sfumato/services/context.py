"""What a service runs: the absolute path of this sfumato and of its config file.

The service manager starts the daemon with a bare environment and no shell, so both must be
absolute paths decided now, at install time.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Literal

from platformdirs.macos import MacOS
from platformdirs.unix import Unix

APP_NAME = "sfumato"
Platform = Literal["linux", "macos"]
PLATFORMS: tuple[Platform, ...] = ("linux", "macos")


def current_platform() -> Platform | None:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    return None


def sfumato_program() -> list[str]:
    """The command that starts this sfumato: the script being run, the one on PATH, or python -m."""
    launched = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if launched is not None and launched.name == APP_NAME and launched.is_file():
        return [os.path.abspath(launched)]
    found = shutil.which(APP_NAME)
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", APP_NAME]


def default_config_path(platform: Platform) -> Path:
    """The daemon's own default on this machine; the other platform's standard place otherwise."""
    if platform == current_platform():
        from sfumato.config_file import config_path

        return config_path()
    dirs = MacOS(APP_NAME) if platform == "macos" else Unix(APP_NAME)
    return dirs.user_config_path / "config.toml"


def absolute_config_path(explicit: str | os.PathLike[str] | None, platform: Platform) -> Path:
    """``--config`` made absolute (the service does not start in the current folder)."""
    path = Path(explicit).expanduser() if explicit else default_config_path(platform)
    return Path(os.path.abspath(path))


def launchd_log_file() -> Path:
    """Where launchd sends the daemon's output: ``~/Library/Logs/sfumato/sfumato.log``."""
    return MacOS(APP_NAME).user_log_path / "sfumato.log"
