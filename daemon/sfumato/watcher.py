"""Filesystem events from the outboxes, as small frozen event objects on a queue.

Like watchdog's own observer/handler split, this module only *reports*: the daemon's main loop
decides what an event means (see :mod:`sfumato.stability`), so the observer thread never blocks
on hashing or cloaking. ``polling=True`` uses watchdog's PollingObserver, for network
filesystems where change events never arrive.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEvent:
    """Something happened to the file at ``path``."""

    path: Path


class FileTouched(FileEvent):
    """Created, or renamed to here."""


class FileModified(FileEvent):
    """Data was written."""


class FileOpened(FileEvent):
    """A process opened it (inotify only)."""


@dataclass(frozen=True)
class FileClosed(FileEvent):
    """A process closed it (inotify only); ``wrote``: it had been opened for writing."""

    wrote: bool


class FileGone(FileEvent):
    """Deleted, or renamed away."""


class FolderAppeared(FileEvent):
    """A folder was created or renamed to here: its files are scanned."""


def _as_path(raw: str | bytes) -> Path:
    return Path(raw.decode() if isinstance(raw, bytes) else raw)


class _Reporter(FileSystemEventHandler):
    """Turns watchdog events into :class:`FileEvent` objects; runs on the observer's thread."""

    def __init__(self, sink: queue.Queue) -> None:
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = _as_path(event.src_path)
        if isinstance(event, FileMovedEvent):
            self.sink.put(FileGone(src))
            self.sink.put(FileTouched(_as_path(event.dest_path)))
        elif isinstance(event, DirMovedEvent):
            self.sink.put(FolderAppeared(_as_path(event.dest_path)))
        elif isinstance(event, DirCreatedEvent):
            self.sink.put(FolderAppeared(src))
        elif isinstance(event, FileCreatedEvent):
            self.sink.put(FileTouched(src))
        elif isinstance(event, FileModifiedEvent):
            self.sink.put(FileModified(src))
        elif isinstance(event, FileOpenedEvent):
            self.sink.put(FileOpened(src))
        elif isinstance(event, FileClosedEvent):
            self.sink.put(FileClosed(src, wrote=True))
        elif isinstance(event, FileClosedNoWriteEvent):
            self.sink.put(FileClosed(src, wrote=False))
        elif isinstance(event, FileDeletedEvent):
            self.sink.put(FileGone(src))


class Watcher:
    """Watches folders recursively until stopped."""

    def __init__(self, sink: queue.Queue, *, polling: bool = False, poll_interval: float = 2.0) -> None:
        self.sink = sink
        self.polling = polling
        self.poll_interval = poll_interval
        self._observer: BaseObserver | None = None

    @property
    def reports_closes(self) -> bool:
        """Whether :class:`FileOpened`/:class:`FileClosed` events will arrive (inotify, not polling)."""
        if self.polling or self._observer is None:
            return False
        return type(self._observer).__name__.startswith("Inotify")

    def start(self, folders: Iterable[Path]) -> None:
        if self.polling:
            observer: BaseObserver = PollingObserver(timeout=self.poll_interval)
        else:
            observer = Observer()
        handler = _Reporter(self.sink)
        for folder in folders:
            observer.schedule(handler, str(folder), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.debug("watching with %s", type(observer).__name__)

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            # An event that arrives while inotify's emitter shuts down makes watchdog log an
            # ERROR for what is an orderly stop; the event itself is found again by the next
            # start's scan, so the line only alarms the user.
            logging.getLogger("watchdog.observers.inotify").addFilter(_drop_shutdown_race)
            observer.stop()
            observer.join(timeout=5)


def _drop_shutdown_race(record: logging.LogRecord) -> bool:
    return "called when the thread is inactive" not in record.getMessage()
