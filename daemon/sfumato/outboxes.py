"""Outbox watching: the watcher's lifecycle, and noticing an outbox deleted or made again.

Each watched outbox is held open: while it is held, a deleted outbox's inode cannot be given to
a folder made again at its path, so the two are told apart by inode, and the new one is watched
(the old watch would never see its files).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from pathlib import Path

from sfumato.watcher import Watcher

log = logging.getLogger("sfumato.daemon")

# Seconds between checks that each outbox is still the folder being watched.
OUTBOX_CHECK = 2.0

FolderId = tuple[int, int]


def folder_id(path: Path) -> FolderId | None:
    """Which folder is at ``path`` now (None: none): a folder made again has a new inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if path.is_dir() else None


class OutboxWatch:
    """Watches a set of outboxes, restarting the watcher when one of them is replaced."""

    def __init__(self, events: queue.Queue, *, polling: bool, poll_interval: float) -> None:
        self.events = events
        self.polling = polling
        self.poll_interval = poll_interval
        self.watcher: Watcher | None = None
        self._ids: dict[Path, FolderId | None] = {}
        self._fds: list[int] = []
        self._next_check = 0.0

    @property
    def reports_closes(self) -> bool:
        return self.watcher is not None and self.watcher.reports_closes

    def start(self, outboxes: list[Path]) -> None:
        """(Re)start watching ``outboxes``; one missing now is watched once it is there."""
        self.stop()
        self._hold(outboxes)
        self.watcher = Watcher(self.events, polling=self.polling, poll_interval=self.poll_interval)
        self.watcher.start(outbox for outbox, found in self._ids.items() if found)
        self._next_check = time.monotonic() + OUTBOX_CHECK

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self._release()

    def seconds_to_check(self) -> float | None:
        if self.watcher is None:
            return None
        return max(0.0, self._next_check - time.monotonic())

    def replaced(self) -> bool:
        """Whether an outbox was removed or made again since the watch started (said in the
        log); the caller restarts the watch and rescans. Looked at every ``OUTBOX_CHECK`` s."""
        if self.watcher is None or time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + OUTBOX_CHECK
        now = {outbox: folder_id(outbox) for outbox in self._ids}
        if now == self._ids:
            return False
        for outbox, found in now.items():
            if found == self._ids.get(outbox):
                continue
            if found is None:
                log.warning("outbox %s was removed: files dropped there wait until it is back", outbox)
            else:
                log.info("outbox %s is there again: watching it", outbox)
        return True

    def _hold(self, outboxes: list[Path]) -> None:
        for outbox in outboxes:
            try:
                fd = os.open(outbox, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                self._ids[outbox] = None
                continue
            self._fds.append(fd)
            st = os.fstat(fd)
            self._ids[outbox] = (st.st_dev, st.st_ino)

    def _release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds, self._ids = [], {}
