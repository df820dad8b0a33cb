"""Dispatch: which due jobs start now, on the free workers.

A job waits while its folder is paused, while its file is being written again (it is taken once
it has settled), and, in an ``auto`` style folder with no target yet, while another image of
that folder is cloaking: the folder's first image picks the target and the others follow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sfumato.config import FolderSettings
from sfumato.ledger import JobPhase, Ledger
from sfumato.paths import FolderPaths
from sfumato.pauses import FolderPauses
from sfumato.stability import StabilityTracker
from sfumato.workers import WorkerPool


class Dispatcher:
    """Hands due jobs to the worker pool; main loop only."""

    def __init__(
        self,
        ledger: Ledger,
        pool: WorkerPool,
        pauses: FolderPauses,
        tracker: StabilityTracker,
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.pauses = pauses
        self.tracker = tracker

    def dispatch(
        self,
        by_key: dict[str, FolderPaths],
        workers: int,
        is_auto: Callable[[FolderSettings], bool],
    ) -> None:
        """Start due jobs of the folders in ``by_key`` until ``workers`` are busy."""
        running = self.pool.running
        free = workers - len(running)
        if free <= 0:
            return
        checked: dict[str, bool] = {}
        for job in self.ledger.due(time.time()):
            if free <= 0:
                break
            paths = by_key.get(job.folder)
            if job.id in running or paths is None:
                continue
            if not self.pauses.usable(paths, checked):
                continue
            if job.phase == JobPhase.CLOAK and job.source in self.tracker:
                continue  # being written again: taken once it has settled
            if (
                is_auto(paths.folder)
                and job.phase == JobPhase.CLOAK
                and job.folder in running.values()
                and self.ledger.folder_target(job.folder) is None
            ):
                continue  # the folder's first image picks its target; the others follow it
            self.pool.submit(job.id, paths)
            free -= 1
