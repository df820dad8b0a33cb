"""The worker pool: threads that run one job each at a time and report back on the event queue.

Only the main loop hands out jobs and reads :attr:`WorkerPool.running`; a worker reports each
job's end as a :class:`JobFinished` event, so the ledger's dispatching stays single-threaded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sfumato.jobs import JobEnd
from sfumato.ledger import JobState
from sfumato.paths import FolderPaths

log = logging.getLogger("sfumato.daemon")


@dataclass(frozen=True)
class JobFinished:
    """A worker is done with a job (for now: a waiting job is tried again later)."""

    job_id: int
    end: JobEnd


RunJob = Callable[[int, FolderPaths], JobEnd]


class WorkerPool:
    """Up to ``count`` threads; a stop request leaves jobs not yet started waiting."""

    def __init__(self, run_job: RunJob, events: queue.Queue, stop: threading.Event) -> None:
        self.run_job = run_job
        self.events = events
        self.stop_requested = stop
        self.running: dict[int, str] = {}  # job id -> folder key; main loop only
        self.threads: list[threading.Thread] = []
        self._jobs: queue.Queue = queue.Queue()

    def grow_to(self, count: int) -> None:
        """A reload may add threads; fewer than there are are simply not fed."""
        while len(self.threads) < count:
            thread = threading.Thread(target=self._work, name="sfumato-worker", daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, job_id: int, paths: FolderPaths) -> None:
        self.running[job_id] = paths.folder.key
        self._jobs.put((job_id, paths))

    def finished(self, job_id: int) -> None:
        self.running.pop(job_id, None)

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job_id, paths = item
            end = JobEnd(JobState.WAITING)
            if self.stop_requested.is_set():  # stopping: leave it waiting for the next start
                self.events.put(JobFinished(job_id, end))
                continue
            try:
                end = self.run_job(job_id, paths)
            except Exception:
                log.exception("job %s crashed", job_id)
            finally:
                self.events.put(JobFinished(job_id, end))

    def shut_down(self, grace: float) -> bool:
        """Ask every thread to end and wait up to ``grace`` s in all; whether all ended."""
        for _ in self.threads:
            self._jobs.put(None)
        deadline = time.monotonic() + grace
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)
