"""Routing: which configured folder a path belongs to, and what a watcher event means for the
stability tracker (the daemon's main loop calls this; the watcher only reports)."""

from __future__ import annotations

from pathlib import Path

from sfumato.paths import FolderPaths
from sfumato.stability import StabilityTracker
from sfumato.watcher import (
    FileClosed,
    FileEvent,
    FileGone,
    FileModified,
    FileOpened,
    FileTouched,
    FolderAppeared,
)


def feed(tracker: StabilityTracker, event: FileEvent) -> None:
    """Tell the tracker about one file event (a new folder is the router's to scan)."""
    if isinstance(event, FileTouched):
        tracker.touch(event.path)
    elif isinstance(event, FileModified):
        tracker.modified(event.path)
    elif isinstance(event, FileOpened):
        tracker.opened(event.path)
    elif isinstance(event, FileClosed):
        tracker.closed(event.path, wrote=event.wrote)
    elif isinstance(event, FileGone):
        tracker.forget(event.path)


class Router:
    """The watched folders, deepest outbox first, so a file of a nested outbox is the nested
    folder's; routes events for files in them to the tracker."""

    def __init__(self, tracker: StabilityTracker) -> None:
        self.tracker = tracker
        self.folders: list[FolderPaths] = []

    def set_folders(self, folders: list[FolderPaths]) -> None:
        self.folders = sorted(folders, key=lambda p: len(p.outbox.parts), reverse=True)

    def folder_of(self, path: Path) -> tuple[FolderPaths, str] | None:
        """The folder ``path`` is in and its path inside the outbox (None: not watched)."""
        for paths in self.folders:
            rel = paths.relative(path)
            if rel is not None:
                return paths, rel
        return None

    def by_key(self) -> dict[str, FolderPaths]:
        return {p.folder.key: p for p in self.folders}

    def scan_all(self) -> None:
        """Every file already in the outboxes is pending, as if just written."""
        for paths in self.folders:
            if not paths.outbox.is_dir():
                continue
            for path in paths.walk():
                self.tracker.touch(path)

    def route(self, event: FileEvent) -> None:
        if isinstance(event, FolderAppeared):
            for paths in self.folders:
                if paths.relative(event.path) is not None:
                    for found in paths.walk_dir(event.path):
                        self.tracker.touch(found)
                    break
            return
        if isinstance(event, FileGone):
            self.tracker.forget(event.path)  # wherever it was
            return
        if self.folder_of(event.path) is not None:
            feed(self.tracker, event)
