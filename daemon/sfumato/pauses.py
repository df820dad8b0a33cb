"""Paused folders: a folder whose ready, originals or failed folder cannot be written keeps its
files in the outbox (said once) until it can, rather than spending a cloak on a file that could
not be saved. The paused set is in the ledger's meta, for ``sfumato status``."""

from __future__ import annotations

import json
import logging
import time

from sfumato.folders import results_problem
from sfumato.ledger import Ledger
from sfumato.paths import FolderPaths

log = logging.getLogger("sfumato.daemon")

PAUSE_CHECK = 2.0  # seconds between looks at whether a paused folder can be written again


class FolderPauses:
    """Folder key -> why its results cannot be written; main-loop only."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reasons: dict[str, str] = {}
        self._next_check = 0.0

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def __contains__(self, key: str) -> bool:
        return key in self.reasons

    def keys(self) -> set[str]:
        return set(self.reasons)

    def pause(self, paths: FolderPaths, reason: str) -> None:
        """Said once; the folder's files stay in the outbox until :meth:`check` clears it."""
        key = paths.folder.key
        if key in self.reasons:
            return
        self.reasons[key] = reason
        log.warning("paused %s: %s; its files stay in the outbox until that is fixed", paths.outbox, reason)
        self._next_check = time.monotonic() + PAUSE_CHECK
        self.ledger.set_meta(paused=json.dumps(self.reasons))

    def check(self, folders: list[FolderPaths]) -> None:
        """Resume each paused folder whose results can be written again (or that is gone)."""
        if not self.reasons or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + PAUSE_CHECK
        by_key = {p.folder.key: p for p in folders}
        for key in list(self.reasons):
            paths = by_key.get(key)
            if paths is None or results_problem(paths.folder) is None:
                del self.reasons[key]
                if paths is not None:
                    log.info("resumed %s: its folders can be written again", paths.outbox)
        self.ledger.set_meta(paused=json.dumps(self.reasons))

    def usable(self, paths: FolderPaths, checked: dict[str, bool]) -> bool:
        """Whether jobs of this folder may start: its results can be written (asked once per
        dispatch round, before any cloak is spent on a file that could not be saved)."""
        key = paths.folder.key
        if key in self.reasons:
            return False
        if key not in checked:
            problem = results_problem(paths.folder)
            if problem is not None:
                self.pause(paths, problem)
            checked[key] = problem is None
        return checked[key]

    def seconds_to_check(self) -> float | None:
        return max(0.0, self._next_check - time.monotonic()) if self.reasons else None
