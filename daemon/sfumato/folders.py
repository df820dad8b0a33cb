"""Whether a folder can take results: a folder problem is not the picture's fault.

The daemon asks before each job (and after a write fails) whether the ready, originals and
failed folders can be created and written; if not, it pauses that folder, its files stay in the
outbox, and it looks again every few seconds. ``sfumato config validate`` asks the same without
creating anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sfumato.config import FolderSettings

RESULT_ROLES = ("ready", "originals", "failed")
PROBE_PREFIX = ".sfumato-probe."  # hidden: never taken for artwork, even inside an outbox


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _probe(folder: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, suffix=".sfumato-tmp", dir=folder)
    os.close(fd)
    os.unlink(name)


def folder_problem(path: Path, role: str, *, create: bool) -> str | None:
    """Why files cannot be written into ``path`` (one sentence), or None when they can.

    ``create``: make it if missing (the daemon); else only check that it could be made, by
    making and removing a folder in its nearest existing parent (``config validate``).
    """
    path = Path(os.path.abspath(path))
    if path.exists() and not path.is_dir():
        return f"the {role} folder {path} is a file, not a folder"
    if not path.exists():
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"the {role} folder {path} cannot be created ({_why(exc)})"
        else:
            parent = path.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                return f"the {role} folder {path} cannot be created ({parent} is a file)"
            try:
                os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=parent))
            except OSError as exc:
                return f"the {role} folder {path} cannot be created ({_why(exc)})"
            return None
    try:
        _probe(path)
    except OSError as exc:
        return f"the {role} folder {path} is not writable ({_why(exc)})"
    return None


def results_problem(folder: FolderSettings, *, create: bool = True) -> str | None:
    """The first problem of a configured folder's ready, originals and failed folders."""
    for role in RESULT_ROLES:
        problem = folder_problem(getattr(folder, role), role, create=create)
        if problem:
            return problem
    return None
