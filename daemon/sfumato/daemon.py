"""The watched-folder daemon: watcher -> stability -> ledger -> jobs, on one main loop.

The main thread owns the event queue, the stability tracker and the dispatching; worker threads
only run jobs, which share the cloaker (models loaded once). Signals only set flags: SIGTERM and
SIGINT stop (the running job's ``should_stop`` turns True and it is resumed on the next start),
SIGHUP reloads the config (an invalid one is reported and the old one kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sfumato import notify
from sfumato.config import Config, FolderSettings, load_config
from sfumato.errors import ConfigError
from sfumato.folders import results_problem
from sfumato.jobs import JobRunner, file_signature, sniff
from sfumato.ledger import Ledger, file_sha256
from sfumato.paths import FolderPaths, is_image_name
from sfumato.stability import StabilityTracker
from sfumato.statelock import StateLock
from sfumato.watcher import Watcher

log = logging.getLogger("sfumato.daemon")

STOP_GRACE = 8.0  # seconds a running job gets to notice the stop flag before we exit anyway
IDLE_WAKE = 5.0  # longest sleep of the main loop when nothing is pending
# Seconds between checks that each outbox is still the folder being watched: one deleted and
# made again is a new folder the old watch never sees.
OUTBOX_CHECK = 2.0

CloakerFactory = Callable[[str, "int | None"], object]


def _real_cloaker(device: str, threads: int | None):
    from sfumato.pipeline import Cloaker  # imported late: the engine pulls in torch

    return Cloaker(device=device, threads=threads)


def _folder_id(path: Path) -> tuple[int, int] | None:
    """Which folder is at ``path`` now (None: none): a folder made again has a new inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if path.is_dir() else None


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
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self._reload = threading.Event()
        self._cloakers: dict[tuple[str, int | None], object] = {}
        self._jobs: queue.Queue = queue.Queue()
        self._running: dict[int, str] = {}  # job id -> folder key
        self._workers: list[threading.Thread] = []
        self.folders: list[FolderPaths] = []
        self.ledger: Ledger | None = None
        self.runner: JobRunner | None = None
        self.watcher: Watcher | None = None
        self.tracker: StabilityTracker | None = None
        self.lock: StateLock | None = None
        self._outbox_ids: dict[Path, tuple[int, int] | None] = {}
        self._outbox_fds: list[int] = []
        self._paused: dict[str, str] = {}  # folder key -> why its results cannot be written
        self._next_pause_check = 0.0
        self._next_outbox_check = 0.0

    # ----- signals -------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.events.put(("wake", None))

    def request_reload(self, *_: object) -> None:
        self._reload.set()
        self.events.put(("wake", None))

    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        handlers = {signal.SIGTERM: self.request_stop, signal.SIGINT: self.request_stop}
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = self.request_reload
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
        return previous

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
        # Deepest outbox first, so a file of a nested outbox belongs to the nested folder.
        folders = [FolderPaths(f) for f in config.folders]
        self.folders = sorted(folders, key=lambda p: len(p.outbox.parts), reverse=True)
        for folder in config.folders:
            options, _ = self._folder_options(folder)
            self._cloaker_for(options).prepare(options)
        self._start_workers()
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

    def _start_workers(self) -> None:
        """Up to ``daemon.workers`` threads (a reload may add some; fewer are simply not fed)."""
        while len(self._workers) < self.config.daemon.workers:
            worker = threading.Thread(target=self._work, name="sfumato-worker", daemon=True)
            worker.start()
            self._workers.append(worker)

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
            if self.watcher is not None:
                self.watcher.stop()
                self._start_watcher()
            self._scan_all()
        notify.notify_ready()

    # ----- events ---------------------------------------------------------------------------
    def _hold_outboxes(self) -> None:
        """Keep each watched outbox open: while it is held, a deleted outbox's inode cannot be
        given to a folder made again at its path, so the two are told apart by inode."""
        self._release_outboxes()
        for paths in self.folders:
            try:
                fd = os.open(paths.outbox, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                self._outbox_ids[paths.outbox] = None
                continue
            self._outbox_fds.append(fd)
            st = os.fstat(fd)
            self._outbox_ids[paths.outbox] = (st.st_dev, st.st_ino)

    def _release_outboxes(self) -> None:
        for fd in self._outbox_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._outbox_fds, self._outbox_ids = [], {}

    def _start_watcher(self) -> None:
        d = self.config.daemon
        self._hold_outboxes()
        self.watcher = Watcher(self.events, polling=d.polling, poll_interval=d.poll_interval)
        self.watcher.start(outbox for outbox, found in self._outbox_ids.items() if found)
        self.tracker.tracks_writers = self.watcher.reports_closes
        self._next_outbox_check = time.monotonic() + OUTBOX_CHECK

    def _check_outboxes(self) -> None:
        """An outbox deleted (and perhaps made again) while watched: say so, and watch the new
        folder, else its files are silently ignored."""
        if self.watcher is None or time.monotonic() < self._next_outbox_check:
            return
        self._next_outbox_check = time.monotonic() + OUTBOX_CHECK
        now = {outbox: _folder_id(outbox) for outbox in self._outbox_ids}
        if now == self._outbox_ids:
            return
        for outbox, found in now.items():
            if found == self._outbox_ids.get(outbox):
                continue
            if found is None:
                log.warning("outbox %s was removed: files dropped there wait until it is back", outbox)
            else:
                log.info("outbox %s is there again: watching it", outbox)
        self.watcher.stop()
        self._start_watcher()
        self._scan_all()

    def _folder_of(self, path: Path) -> tuple[FolderPaths, str] | None:
        for paths in self.folders:
            rel = paths.relative(path)
            if rel is not None:
                return paths, rel
        return None

    def _scan_all(self) -> None:
        for paths in self.folders:
            if not paths.outbox.is_dir():
                continue
            for path in paths.walk():
                self.tracker.touch(path)

    def _handle(self, kind: str, payload) -> None:
        if kind == "finished":
            self._finished(*payload)
            return
        if kind == "wake" or payload is None:
            return
        path = Path(payload)
        if kind == "dir":
            for paths in self.folders:
                if paths.relative(path) is not None:
                    for found in paths.walk_dir(path):
                        self.tracker.touch(found)
                    break
            return
        if kind == "gone":
            self.tracker.forget(path)
            return
        if self._folder_of(path) is None:
            return
        if kind == "touch":
            self.tracker.touch(path)
        elif kind == "modified":
            self.tracker.modified(path)
        elif kind == "opened":
            self.tracker.opened(path)
        elif kind in ("closed", "read"):
            self.tracker.closed(path, wrote=kind == "closed")

    def _admit(self, path: Path) -> None:
        """A complete file: record it in the ledger as a job (or as a duplicate, or ignored)."""
        found = self._folder_of(path)
        if found is None:
            return
        paths, rel = found
        key = paths.folder.key
        try:
            st = path.stat()
            if not path.is_file():
                return
            if not is_image_name(rel) and sniff(path) not in ("PNG", "JPEG"):
                if not self.ledger.find_ignored(key, rel, st.st_size, st.st_mtime):
                    self.ledger.add(key, rel, st.st_size, st.st_mtime, "", state="ignored")
                    log.info("left %s in the outbox: not a JPG or PNG file", paths.shown(path))
                    # logged once: the ledger remembers it until the file changes
                return
            sha = file_sha256(path)
        except OSError:
            return
        active = self.ledger.find_active(key, rel)
        if active is not None:
            if active.sha256 != sha and active.id not in self._running and active.phase == "cloak":
                changed = {"sha256": sha, "size": st.st_size, "mtime": st.st_mtime}
                if active.truncated_sig and file_signature(path) != active.truncated_sig:
                    changed["next_try_at"] = 0  # more of a file that was cut short: read it now
                self.ledger.update(active.id, **changed)
            return
        done = self.ledger.find_done_content(key, sha)
        if done is not None:
            self.ledger.add(key, rel, st.st_size, st.st_mtime, sha, phase="duplicate", output=done.output)
        else:
            self.ledger.add(key, rel, st.st_size, st.st_mtime, sha)
        log.debug("queued %s", paths.shown(path))

    # ----- paused folders ---------------------------------------------------------------------
    def _pause(self, paths: FolderPaths, reason: str) -> None:
        """Said once; the folder's files stay in the outbox until :meth:`_check_paused` clears it."""
        key = paths.folder.key
        if key in self._paused:
            return
        self._paused[key] = reason
        log.warning("paused %s: %s; its files stay in the outbox until that is fixed", paths.outbox, reason)
        self._next_pause_check = time.monotonic() + OUTBOX_CHECK
        self.ledger.set_meta(paused=json.dumps(self._paused))

    def _check_paused(self, force: bool = False) -> None:
        if not self._paused or (not force and time.monotonic() < self._next_pause_check):
            return
        self._next_pause_check = time.monotonic() + OUTBOX_CHECK
        by_key = {p.folder.key: p for p in self.folders}
        for key in list(self._paused):
            paths = by_key.get(key)
            if paths is None or results_problem(paths.folder) is None:
                del self._paused[key]
                if paths is not None:
                    log.info("resumed %s: its folders can be written again", paths.outbox)
        self.ledger.set_meta(paused=json.dumps(self._paused))

    def _usable(self, paths: FolderPaths, checked: dict[str, bool]) -> bool:
        """Whether jobs of this folder may start: its results can be written (asked once per
        dispatch round, before any cloak is spent on a file that could not be saved)."""
        key = paths.folder.key
        if key in self._paused:
            return False
        if key not in checked:
            problem = results_problem(paths.folder)
            if problem is not None:
                self._pause(paths, problem)
            checked[key] = problem is None
        return checked[key]

    # ----- jobs -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        free = self.config.daemon.workers - len(self._running)
        if free <= 0:
            return
        by_key = {p.folder.key: p for p in self.folders}
        checked: dict[str, bool] = {}
        for job in self.ledger.due(time.time()):
            if free <= 0:
                break
            paths = by_key.get(job.folder)
            if job.id in self._running or paths is None:
                continue
            if not self._usable(paths, checked):
                continue
            if job.phase == "cloak" and job.source in self.tracker:
                continue  # being written again: taken once it has settled

            auto = self.config.folder_style(paths.folder) == "auto"
            if (
                auto
                and job.phase == "cloak"
                and job.folder in self._running.values()
                and self.ledger.folder_target(job.folder) is None
            ):
                continue  # the folder's first image picks its target; the others follow it
            self._running[job.id] = job.folder
            self._jobs.put((job.id, paths))
            free -= 1

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job_id, paths = item
            state = "waiting"
            if self.stop.is_set():  # stopping: leave it waiting for the next start
                self.events.put(("finished", (job_id, state)))
                continue
            try:
                job = self.ledger.get(job_id)
                options, auto = self._folder_options(paths.folder)
                state = self.runner.run(job, paths, options, self._cloaker_for(options), auto_style=auto)
            except Exception:
                log.exception("job %s crashed", job_id)
            finally:
                self.events.put(("finished", (job_id, state)))

    def _finished(self, job_id: int, state: str) -> None:
        self._running.pop(job_id, None)
        notify.notify_status(self._status_line())
        job = self.ledger.get(job_id)
        if state == "paused":
            paths = {p.folder.key: p for p in self.folders}.get(job.folder)
            problem = results_problem(paths.folder) if paths is not None else None
            if paths is not None and problem is not None:
                self._pause(paths, problem)
        written = state in ("done", "duplicate") or (state == "waiting" and job.truncated_sig)
        if written and job.source.exists():
            # Rewritten (or, if truncated, written further) while it was read: take the new content.
            self.tracker.touch(job.source)

    def _status_line(self) -> str:
        if self._running:
            return f"cloaking {len(self._running)} file(s)"
        return "idle, watching " + ", ".join(str(p.outbox) for p in self.folders)

    def _on_status(self, text: str) -> None:
        notify.notify_status(text)

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
        if self.watcher is not None:
            waits.append(max(0.0, self._next_outbox_check - time.monotonic()))
        if self._paused and not once:
            waits.append(max(0.0, self._next_pause_check - time.monotonic()))
        return max(0.02, min(waits))

    def _watched_keys(self) -> set[str]:
        return {p.folder.key for p in self.folders}

    def _idle(self) -> bool:
        """Nothing left for ``--once``: no pending file, no due job, no running job, and no file
        waiting for the rest of its data (it gets its bounded wait even with ``--once``)."""
        if self.tracker or self._running:
            return False
        watched = self._watched_keys() - self._paused.keys()
        if self.ledger.next_truncated_at(watched) is not None:
            return False
        return not any(job.folder in watched for job in self.ledger.due(time.time()))

    def _left_undone(self) -> int:
        """After ``--once``: say what could not be done; the exit status (1 if anything)."""
        watched = self._watched_keys()
        waiting = [j for j in self.ledger.waiting() if j.folder in watched]
        for paths in self.folders:
            key = paths.folder.key
            if key in self._paused:
                count = sum(j.folder == key for j in waiting)
                log.error("could not process %d file(s) of %s: %s", count, paths.outbox, self._paused[key])
        retries = [j for j in waiting if j.folder not in self._paused]
        if retries:
            log.error("%d file(s) met an error and wait in the outbox for a retry", len(retries))
        return 1 if self._paused or retries else 0

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
        self.runner = JobRunner(
            self.ledger,
            max_attempts=d.max_attempts,
            retry_backoff=d.retry_backoff,
            max_file_mb=d.max_file_mb,
            truncated_wait=d.truncated_wait,
            stop=self.stop,
            on_status=self._on_status,
        )
        previous = self._install_signals()
        try:
            self._apply_config(self.config)
            if not once:
                self._start_watcher()
            self._scan_all()
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
            self._check_paused()
            for path in self.tracker.ready():
                self._admit(path)
            self._dispatch()
            if once and self._idle():
                return
            notify.watchdog_ping()
            try:
                kind, payload = self.events.get(timeout=self._timeout(once))
            except queue.Empty:
                continue
            self._handle(kind, payload)
            while True:  # drain a burst (200 files dropped at once) before re-checking
                try:
                    kind, payload = self.events.get_nowait()
                except queue.Empty:
                    break
                self._handle(kind, payload)

    def _shutdown(self, previous: dict) -> None:
        if self.stop.is_set():
            log.info("stopping")
        notify.notify_stopping()
        self.stop.set()
        if self.watcher is not None:
            self.watcher.stop()
        self._release_outboxes()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = any(w.is_alive() for w in self._workers)
        for signum, handler in previous.items():
            with contextlib.suppress(Exception):
                signal.signal(signum, handler)
        if self.ledger is not None and not alive:
            with contextlib.suppress(Exception):
                self.ledger.set_meta(pid=None, stopped_at=time.time())
            self.ledger.close()
