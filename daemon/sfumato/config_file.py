"""Where the config file lives, and the default one written on first run."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs
import tomli_w

from sfumato.config import APP_NAME, Config, load_config
from sfumato.errors import UsageError
from sfumato.fileops import atomic_write_bytes

FOLDER_ROLES = ("outbox", "ready", "originals", "failed")


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """``--config``, else ``$SFUMATO_CONFIG``, else the platform's config folder."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("SFUMATO_CONFIG"):
        return Path(os.environ["SFUMATO_CONFIG"]).expanduser()
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


def default_folders(base: Path | None = None) -> dict[str, Path]:
    """``<pictures>/sfumato/{outbox,ready,originals,failed}``."""
    base = base if base is not None else Path(platformdirs.user_pictures_dir()) / APP_NAME
    return {role: base / role for role in FOLDER_ROLES}


def _toml_string(text: str) -> str:
    return tomli_w.dumps({"x": text}).partition("=")[2].strip()


def render_default_config(folders: dict[str, Path | str]) -> str:
    """The documented default config, with its one folder set to ``folders``."""
    text = resources.files("sfumato").joinpath("config_template.toml").read_text("utf-8")
    for role in FOLDER_ROLES:
        text = text.replace(f"@{role.upper()}@", _toml_string(str(folders[role])))
    return text


def write_default_config(path: Path, *, force: bool = False) -> Path:
    """Write the default config to ``path``; refuses to replace an existing file unless forced."""
    if path.exists() and not force:
        raise UsageError(f"{path} already exists: use --force to replace it")
    atomic_write_bytes(path, render_default_config(default_folders()).encode("utf-8"))
    return path


def create_folders(config: Config) -> list[Path]:
    """Make every configured folder that is missing; returns the ones created."""
    created = []
    for folder in config.folders:
        for role in FOLDER_ROLES:
            path = getattr(folder, role)
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(path)
    return created


def load_or_create(path: Path) -> tuple[Config, list[str]]:
    """Load ``path``; on first run (no file yet) create the default config and its folders.

    Returns the config and lines telling the user what was created and where.
    """
    messages = []
    if not path.exists():
        write_default_config(path)
        messages.append(f"created the default config at {path}")
    config = load_config(path)
    for created in create_folders(config):
        messages.append(f"created folder {created}")
    return config, messages
