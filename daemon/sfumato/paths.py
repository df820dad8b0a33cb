"""Which paths in an outbox are the user's artwork, and where each one's results go.

Subfolders of an outbox are mirrored: ``outbox/trip/a.png`` becomes ``ready/trip/a.png`` and
``originals/trip/a.png``. The ready, originals and failed folders are skipped even when they sit
inside the outbox, and so are hidden files and the temp names browsers, editors and copy tools
use while a file is still being written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sfumato import image_names
from sfumato.config import FolderSettings
from sfumato.logs import quoted

# Names of files still being written: browsers (.part, .crdownload, .download, .opdownload),
# editors and copy tools (.tmp, .swp, ~), rsync (hidden .name.XXXXXX), our own temp files.
TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".opdownload",
    ".tmp",
    ".temp",
    ".swp",
    ".sfumato-tmp",
    "~",
)


def is_temp_name(name: str) -> bool:
    lower = name.lower()
    return name.startswith((".", "~$", "#")) or lower.endswith(TEMP_SUFFIXES)


def is_image_name(name: str) -> bool:
    """An outbox file named as a picture (the daemon also takes one whose bytes say so)."""
    return image_names.is_image_name(name)


def has_download_sibling(path: Path) -> bool:
    """Firefox first creates an empty ``a.png`` next to ``a.png.part``: wait for the real one."""
    suffixes = (".part", ".crdownload", ".download")
    return any(path.with_name(path.name + s).exists() for s in suffixes)


class FolderPaths:
    """Maps files of one configured folder between outbox, ready, originals and failed."""

    def __init__(self, folder: FolderSettings) -> None:
        self.folder = folder
        self.outbox = Path(os.path.abspath(folder.outbox))
        roles = ("ready", "originals", "failed")
        self._skipped = [Path(os.path.abspath(getattr(folder, role))) for role in roles]

    def relative(self, path: Path) -> str | None:
        """The path inside the outbox if it is a candidate artwork file, else None."""
        path = Path(os.path.abspath(path))
        try:
            rel = path.relative_to(self.outbox)
        except ValueError:
            return None
        if not rel.parts or any(is_temp_name(part) for part in rel.parts):
            return None
        if any(path == skip or skip in path.parents for skip in self._skipped):
            return None
        return rel.as_posix()

    def is_skipped_dir(self, path: Path) -> bool:
        path = Path(os.path.abspath(path))
        return path in self._skipped or any(s in path.parents for s in self._skipped)

    def walk(self) -> Iterator[Path]:
        """Every candidate file under the outbox now (start-up scan, reload, moved-in folders)."""
        yield from self.walk_dir(self.outbox)

    def walk_dir(self, top: Path) -> Iterator[Path]:
        for root, dirs, files in os.walk(top):
            root_path = Path(root)
            dirs[:] = [d for d in dirs if not is_temp_name(d) and not self.is_skipped_dir(root_path / d)]
            for name in files:
                path = root_path / name
                if self.relative(path) is not None:
                    yield path

    def ready_path(self, rel: str) -> Path:
        return Path(self.folder.ready) / rel

    def originals_path(self, rel: str) -> Path:
        return Path(self.folder.originals) / rel

    def failed_path(self, rel: str) -> Path:
        return Path(self.folder.failed) / rel

    def shown(self, path: Path | str) -> str:
        """A short form for logs: relative to the folder holding outbox/ready/... where possible,
        quoted if the name could split a log line."""
        path = Path(path)
        for base in {self.outbox.parent, Path(self.folder.ready).parent}:
            try:
                return quoted(path.relative_to(base).as_posix())
            except ValueError:
                continue
        return quoted(path)
