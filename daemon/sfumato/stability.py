"""When a file is complete: closed by every writer and its size and mtime stable for a while.

Events only say *something* happened to a path; a slow copy produces many of them, and a file
is worth reading only once nobody is writing it. Where the platform reports opens and closes
(inotify), a file held open by a writer is never taken; elsewhere (polling, macOS) stability
alone decides, so ``settle_seconds`` should exceed the longest pause of the slowest writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfumato.paths import has_download_sibling

# A writer that keeps a file open but writes nothing for this long has most likely gone away
# without us seeing its close event: take the file anyway.
OPEN_WRITER_TIMEOUT = 60.0


@dataclass
class _Pending:
    signature: tuple[int, int] | None = None
    changed_at: float = 0.0
    writers: int = 0


class StabilityTracker:
    """Pending paths and the moment each became quiet; single-threaded (the daemon's main loop)."""

    def __init__(
        self,
        settle_seconds: float,
        *,
        tracks_writers: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``tracks_writers``: open and close events are reported (inotify), so a file being
        written is known to be open until its close event arrives."""
        self.settle = settle_seconds
        self.tracks_writers = tracks_writers
        self.clock = clock
        self._pending: dict[Path, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: Path) -> bool:
        return path in self._pending

    def touch(self, path: Path) -> None:
        """Something changed at ``path`` (created, modified, renamed here, closed, scanned)."""
        entry = self._pending.setdefault(path, _Pending(changed_at=self.clock()))
        entry.changed_at = self.clock()

    def modified(self, path: Path) -> None:
        """Data was written: with inotify, the writer holds the file open until it closes it."""
        new = path not in self._pending
        self.touch(path)
        if new and self.tracks_writers:
            self._pending[path].writers = 1

    def opened(self, path: Path) -> None:
        """A process opened ``path``; only counted for files we are already waiting on."""
        if path in self._pending:
            self._pending[path].writers += 1

    def closed(self, path: Path, wrote: bool) -> None:
        entry = self._pending.get(path)
        if entry is None:
            if wrote:
                self.touch(path)
            return
        entry.writers = max(0, entry.writers - 1)
        entry.changed_at = self.clock()

    def forget(self, path: Path) -> None:
        self._pending.pop(path, None)

    def _wait_for(self, entry: _Pending) -> float:
        if entry.signature is not None and entry.signature[0] == 0:
            return max(5 * self.settle, 1.0)  # an empty placeholder may still be filled
        return self.settle

    def ready(self) -> list[Path]:
        """Paths complete now (removed from the pending set); vanished paths are dropped."""
        now = self.clock()
        done = []
        for path, entry in list(self._pending.items()):
            try:
                st = os.stat(path)
            except OSError:
                del self._pending[path]
                continue
            signature = (st.st_size, st.st_mtime_ns)
            if signature != entry.signature:
                entry.signature = signature
                entry.changed_at = now
                continue
            quiet = now - entry.changed_at
            if quiet < self._wait_for(entry):
                continue
            if entry.writers and quiet < OPEN_WRITER_TIMEOUT:
                continue
            if has_download_sibling(path) and quiet < OPEN_WRITER_TIMEOUT:
                continue
            del self._pending[path]
            done.append(path)
        return done

    def next_check_in(self) -> float | None:
        """Seconds until a pending path may become ready (None: nothing pending)."""
        if not self._pending:
            return None
        now = self.clock()
        waits = [
            max(0.0, e.changed_at + self._wait_for(e) - now) if e.signature else 0.0
            for e in self._pending.values()
        ]
        return min(min(waits), max(self.settle, 0.05))
