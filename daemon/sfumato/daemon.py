"""The watched-folder daemon: watcher -> stability -> intake -> ledger -> jobs, on one main loop.

The main thread owns the event queue, the stability tracker and the dispatching; worker threads
only run jobs, which share the cloaker (models loaded once). Signals only set flags: SIGTERM and
SIGINT stop (the running job's ``should_stop`` turns True and it is resumed on the next start),
SIGHUP reloads the config (an invalid one is reported and the old one kept). The parts are
modules of their own: :mod:`~sfumato.signals`, :mod:`~sfumato.outboxes` (watcher lifecycle),
:mod:`~sfumato.routing`, :mod:`~sfumato.intake`, :mod:`~sfumato.pauses` and
:mod:`~sfumato.workers`; this one configures them, dispatches and runs the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfumato import notify, signals
from sfumato.config import Config, FolderSettings, load_config
from sfumato.dispatch import Dispatcher
from sfumato.errors import ConfigError
from sfumato.folders import results_problem
from sfumato.intake import Intake
from sfumato.jobs import JobEnd, JobRunner
from sfumato.ledger import JobState, Ledger
from sfumato.outboxes import OutboxWatch
from sfumato.paths import FolderPaths
from sfumato.pauses import FolderPauses
from sfumato.routing import Router
from sfumato.stability import StabilityTracker
from sfumato.statelock import StateLock
from sfumato.watcher import FileEvent, Watcher
from sfumato.workers import JobFinished, WorkerPool

log = logging.getLogger("sfumato.daemon")

STOP_GRACE = 8.0  # seconds a running job gets to notice the stop flag before we exit anyway
IDLE_WAKE = 5.0  # longest sleep of the main loop when nothing is pending

CloakerFactory = Callable[[str, "int | None"], object]


def _real_cloaker(device: str, threads: int | None):
    from sfumato.pipeline import Cloaker  # imported late: the engine pulls in torch

    return Cloaker(device=device, threads=threads)


@dataclass(frozen=True)
class Wake:
    """Nothing happened: the main loop looks at its flags (stop, reload) now."""


class Daemon:
    """``Daemon(config).run()`` watches until stopped; ``run(once=True)`` drains and returns."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        cloaker_factory: CloakerFactory | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.cloaker_factory = cloaker_factory or _real_cloaker
        self.events: queue.Queue[FileEvent | JobFinished | Wake] = queue.Queue()
        self.stop = threading.Event()
        self._reload = threading.Event()
        self._cloakers: dict[tuple[str, int | None], object] = {}
        self.pool = WorkerPool(self._run_job, self.events, self.stop)
        self.ledger: Ledger | None = None
        self.runner: JobRunner | None = None
        self.tracker: StabilityTracker | None = None
        self.router: Router | None = None
        self.intake: Intake | None = None
        self.pauses: FolderPauses | None = None
        self.dispatcher: Dispatcher | None = None
        self.outboxes: OutboxWatch | None = None
        self.lock: StateLock | None = None

    @property
    def watcher(self) -> Watcher | None:
        return self.outboxes.watcher if self.outboxes is not None else None

    @property
    def folders(self) -> list[FolderPaths]:
        return self.router.folders if self.router is not None else []

    # ----- signals -------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.events.put(Wake())

    def request_reload(self, *_: object) -> None:
        self._reload.set()
        self.events.put(Wake())

    # ----- configuration --------------------------------------------------------------------
    def _cloaker_for(self, options) -> object:
        key = (options.device, options.threads)
        if key not in self._cloakers:
            self._cloakers[key] = self.cloaker_factory(options.device, options.threads)
        return self._cloakers[key]

    def _folder_options(self, folder: FolderSettings):
        auto = self.config.folder_style(folder) == "auto"
        target = self.ledger.folder_target(folder.key) if auto else None
        options = self.config.options_for(folder, style=target)
        if options.poison:  # the auto targets chosen before, so every image of a concept agrees
            options = dataclasses.replace(options, poison_targets=self.ledger.poison_targets())
        return options, auto

    def _apply_config(self, config: Config) -> None:
        """Make ``config`` current: folders exist, models are loaded, watches follow."""
        for folder in config.folders:
            try:
                folder.outbox.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                message = f"{folder.outbox}: cannot create the outbox: {exc.strerror}"
                raise ConfigError(message) from None
        self.config = config
        self.router.set_folders([FolderPaths(f) for f in config.folders])
        for folder in config.folders:
            options, _ = self._folder_options(folder)
            self._cloaker_for(options).prepare(options)
        self.pool.grow_to(self.config.daemon.workers)
        log.info(
            "watching %s",
            ", ".join(str(p.outbox) for p in self.folders) or "no folders (none configured)",
        )
        self.ledger.set_meta(
            pid=os.getpid(),
            started_at=time.time(),
            config=self.config_path,
            folders=json.dumps([f.model_dump(mode="json") for f in config.folders]),
        )

    def _reload_config(self) -> None:
        self._reload.clear()
        notify.notify_reloading()
        try:
            config = load_config(self.config_path)
            if config.daemon.state_dir != self.config.daemon.state_dir:
                log.warning("daemon.state_dir changes only take effect after a restart")
                config.daemon.state_dir = self.config.daemon.state_dir
            if config.daemon.nice != self.config.daemon.nice:
                log.warning("daemon.nice changes only take effect after a restart")
            logging.getLogger("sfumato").setLevel(config.daemon.log_level.upper())
            self._apply_config(config)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                log.error("%s", line)
            log.error("kept the previous configuration")
        except Exception as exc:  # e.g. an encoder that cannot be loaded
            log.error("could not apply the new configuration (%s); kept the previous one", exc)
        else:
            log.info("reloaded the configuration from %s", self.config_path)
            if self.outboxes is not None:
                self._start_watcher()
            self.router.scan_all()
        notify.notify_ready()

    # ----- watching -------------------------------------------------------------------------
    def _start_watcher(self) -> None:
        d = self.config.daemon
        if self.outboxes is None:
            self.outboxes = OutboxWatch(self.events, polling=d.polling, poll_interval=d.poll_interval)
        self.outboxes.start([p.outbox for p in self.folders])
        self.tracker.tracks_writers = self.outboxes.reports_closes

    def _check_outboxes(self) -> None:
        """An outbox deleted (and perhaps made again) while watched: watch the new folder, else
        its files are silently ignored."""
        if self.outboxes is not None and self.outboxes.replaced():
            self._start_watcher()
            self.router.scan_all()

    def _handle(self, event: FileEvent | JobFinished | Wake) -> None:
        if isinstance(event, JobFinished):
            self._finished(event.job_id, event.end)
        elif isinstance(event, FileEvent):
            self.router.route(event)

    # ----- jobs -----------------------------------------------------------------------------
    def _is_auto(self, folder: FolderSettings) -> bool:
        return self.config.folder_style(folder) == "auto"

    def _run_job(self, job_id: int, paths: FolderPaths) -> JobEnd:
        """On a worker thread."""
        job = self.ledger.get(job_id)
        options, auto = self._folder_options(paths.folder)
        arrival = self.intake.arrival_for(job)
        return self.runner.run(
            job, paths, options, self._cloaker_for(options), auto_style=auto, arrival=arrival
        )

    def _finished(self, job_id: int, end: JobEnd) -> None:
        self.pool.finished(job_id)
        notify.notify_status(self._status_line())
        job = self.ledger.get(job_id)
        if job.state != JobState.WAITING:
            self.intake.forget(job_id)
        if end.folder_broken:
            paths = self.router.by_key().get(job.folder)
            problem = results_problem(paths.folder) if paths is not None else None
            if paths is not None and problem is not None:
                self.pauses.pause(paths, problem)
        state = end.state
        written = state in (JobState.DONE, JobState.DUPLICATE) or (
            state == JobState.WAITING and job.truncated_sig
        )
        if written and job.source.exists():
            # Rewritten (or, if truncated, written further) while it was read: take the new content.
            self.tracker.touch(job.source)

    def _status_line(self) -> str:
        if self.pool.running:
            return f"cloaking {len(self.pool.running)} file(s)"
        return "idle, watching " + ", ".join(str(p.outbox) for p in self.folders)

    # ----- main loop ------------------------------------------------------------------------
    def _timeout(self, once: bool) -> float:
        waits = [IDLE_WAKE]
        if (pending := self.tracker.next_check_in()) is not None:
            waits.append(pending)
        if (retry := self.ledger.next_retry_at()) is not None and not once:
            waits.append(max(0.0, retry - time.time()))
        if once and (rest := self.ledger.next_truncated_at(self._watched_keys())) is not None:
            waits.append(max(0.0, rest - time.time()))
        if (interval := notify.watchdog_interval()) is not None:
            waits.append(interval / 2)
        if self.outboxes is not None and (outbox_check := self.outboxes.seconds_to_check()) is not None:
            waits.append(outbox_check)
        if not once and (pause_check := self.pauses.seconds_to_check()) is not None:
            waits.append(pause_check)
        return max(0.02, min(waits))

    def _watched_keys(self) -> set[str]:
        return {p.folder.key for p in self.folders}

    def _idle(self) -> bool:
        """Nothing left for ``--once``: no pending file, no due job, no running job, and no file
        waiting for the rest of its data (it gets its bounded wait even with ``--once``)."""
        if self.tracker or self.pool.running:
            return False
        watched = self._watched_keys() - self.pauses.keys()
        if self.ledger.next_truncated_at(watched) is not None:
            return False
        return not any(job.folder in watched for job in self.ledger.due(time.time()))

    def _left_undone(self) -> int:
        """After ``--once``: say what could not be done; the exit status (1 if anything)."""
        watched = self._watched_keys()
        waiting = [j for j in self.ledger.waiting() if j.folder in watched]
        paused = self.pauses.reasons
        for paths in self.folders:
            key = paths.folder.key
            if key in paused:
                count = sum(j.folder == key for j in waiting)
                log.error("could not process %d file(s) of %s: %s", count, paths.outbox, paused[key])
        retries = [j for j in waiting if j.folder not in paused]
        if retries:
            log.error("%d file(s) met an error and wait in the outbox for a retry", len(retries))
        return 1 if paused or retries else 0

    def run(self, once: bool = False) -> int:
        """Watch (or, with ``once``, drain what is waiting) until stopped; returns exit status."""
        d = self.config.daemon
        self.lock = StateLock.acquire(d.state_dir)  # before anything is read or written
        try:
            return self._run(once)
        finally:
            self.lock.release()

    def _run(self, once: bool) -> int:
        d = self.config.daemon
        log.info("config %s, ledger in %s", self.config_path, d.state_dir)
        self.ledger = Ledger(d.state_dir)
        recovered = self.ledger.recover()
        if recovered:
            log.info("resuming %d interrupted job(s)", recovered)
        self.tracker = StabilityTracker(d.settle_seconds)
        self.router = Router(self.tracker)
        self.intake = Intake(self.ledger, self.router.folder_of, lambda job_id: job_id in self.pool.running)
        self.pauses = FolderPauses(self.ledger)
        self.dispatcher = Dispatcher(self.ledger, self.pool, self.pauses, self.tracker)
        self.runner = JobRunner(
            self.ledger,
            max_attempts=d.max_attempts,
            retry_backoff=d.retry_backoff,
            max_file_mb=d.max_file_mb,
            truncated_wait=d.truncated_wait,
            stop=self.stop,
            on_status=notify.notify_status,
        )
        previous = signals.install(self.request_stop, self.request_reload)
        try:
            self._apply_config(self.config)
            if not once:
                self._start_watcher()
            self.router.scan_all()
            notify.notify_ready()
            notify.notify_status(self._status_line())
            self._loop(once)
            status = self._left_undone() if once and not self.stop.is_set() else 0
        finally:
            self._shutdown(previous)
        return status

    def _loop(self, once: bool) -> None:
        while not self.stop.is_set():
            if self._reload.is_set():
                self._reload_config()
            self._check_outboxes()
            self.pauses.check(self.folders)
            for path in self.tracker.ready():
                self.intake.admit(path)
            self.dispatcher.dispatch(self.router.by_key(), self.config.daemon.workers, self._is_auto)
            if once and self._idle():
                return
            notify.watchdog_ping()
            try:
                event = self.events.get(timeout=self._timeout(once))
            except queue.Empty:
                continue
            self._handle(event)
            while True:  # drain a burst (200 files dropped at once) before re-checking
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    break
                self._handle(event)

    def _shutdown(self, previous: signals.Previous) -> None:
        if self.stop.is_set():
            log.info("stopping")
        notify.notify_stopping()
        self.stop.set()
        if self.outboxes is not None:
            self.outboxes.stop()
        all_ended = self.pool.shut_down(STOP_GRACE)
        signals.restore(previous)
        if self.ledger is not None and all_ended:
            with contextlib.suppress(Exception):
                self.ledger.set_meta(pid=None, stopped_at=time.time())
            self.ledger.close()
