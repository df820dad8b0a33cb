"""Intake: a settled file is examined once (stat, first bytes, SHA-256 in one read) and recorded.

The :class:`Arrival` it makes travels on with the job, so neither the admission (dedupe by
content) nor the job (size limit, "not an image") nor the final move (was it rewritten while it
was cloaked?) opens the file again to ask what intake already knows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sfumato.ledger import Job, JobPhase, JobState, Ledger
from sfumato.paths import FolderPaths, is_image_name

log = logging.getLogger("sfumato.daemon")

_BLOCK = 1 << 20


class ImageKind(str, Enum):
    """What a file's first bytes say it is (the extension may lie)."""

    PNG = "PNG"
    JPEG = "JPEG"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Stamp:
    """A file's stat at one moment: any write, rename or replacement changes it (ctime)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @property
    def signature(self) -> str:
        """``size:mtime_ns``, the form the ledger keeps for a file read as truncated."""
        return f"{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class Arrival:
    """One settled file as intake found it."""

    path: Path
    kind: ImageKind | None  # None: neither PNG nor JPEG by its first bytes
    size: int
    mtime: float
    stamp: Stamp
    sha256: str | None  # None: not taken (not an image), so not read beyond its first bytes
    head: bytes  # the first bytes, to name what a file that is not an image is instead

    def unchanged(self) -> bool:
        """Whether the file is still the one examined (stat only: no second hash)."""
        try:
            return Stamp.of(os.stat(self.path)) == self.stamp
        except OSError:
            return False


def examine(path: Path, *, image_name: bool, digest: bool = True) -> Arrival | None:
    """Stat, sniff and hash ``path`` in one read; None if it is not a regular file.

    ``image_name``: its name says JPG/PNG. A file whose name and first bytes both say it is not
    an image is left alone, so it is not read beyond its first bytes (a video, an archive).
    ``digest=False``: stat and sniff only (a job resumed after a restart, its hash recorded).
    """
    from sfumato.images.sniffing import HEADER_BYTES, sniff_bytes  # late: loads PIL and OpenCV

    if not stat.S_ISREG(os.stat(path).st_mode):
        return None  # a folder, or a pipe that opening would block on
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        block = handle.read(_BLOCK)
        head = block[:HEADER_BYTES]
        found = sniff_bytes(head)
        kind = ImageKind(found) if found else None
        sha256 = None
        if digest and (image_name or kind is not None):
            hasher = hashlib.sha256()
            while block:
                hasher.update(block)
                block = handle.read(_BLOCK)
            sha256 = hasher.hexdigest()
    return Arrival(path, kind, st.st_size, st.st_mtime, Stamp.of(st), sha256, head)


class Intake:
    """Turns settled files into ledger rows: a job, a duplicate of content already cloaked, or
    an ignored file. Keeps each job's :class:`Arrival` for the worker that runs it."""

    def __init__(
        self,
        ledger: Ledger,
        folder_of: Callable[[Path], tuple[FolderPaths, str] | None],
        is_running: Callable[[int], bool],
    ) -> None:
        self.ledger = ledger
        self.folder_of = folder_of
        self.is_running = is_running
        self._arrivals: dict[int, Arrival] = {}  # job id -> what intake found (this run only)

    def arrival_for(self, job: Job) -> Arrival | None:
        """The job's arrival if it still describes the content recorded (None after a restart)."""
        arrival = self._arrivals.get(job.id)
        return arrival if arrival is not None and arrival.sha256 == job.sha256 else None

    def forget(self, job_id: int) -> None:
        self._arrivals.pop(job_id, None)

    def admit(self, path: Path) -> None:
        """A complete file: record it in the ledger as a job (or as a duplicate, or ignored)."""
        found = self.folder_of(path)
        if found is None:
            return
        paths, rel = found
        key = paths.folder.key
        try:
            arrival = examine(path, image_name=is_image_name(rel))
        except OSError:
            return
        if arrival is None:
            return
        if arrival.sha256 is None:
            if not self.ledger.find_ignored(key, rel, arrival.size, arrival.mtime):
                self.ledger.add(key, rel, arrival.size, arrival.mtime, "", state=JobState.IGNORED)
                log.info("left %s in the outbox: not a JPG or PNG file", paths.shown(path))
                # logged once: the ledger remembers it until the file changes
            return
        active = self.ledger.find_active(key, rel)
        if active is not None:
            self._changed_while_queued(active, arrival)
            return
        done = self.ledger.find_done_content(key, arrival.sha256)
        size, mtime, sha = arrival.size, arrival.mtime, arrival.sha256
        if done is not None:
            job_id = self.ledger.add(key, rel, size, mtime, sha, phase=JobPhase.DUPLICATE, output=done.output)
        else:
            job_id = self.ledger.add(key, rel, size, mtime, sha)
        self._arrivals[job_id] = arrival
        log.debug("queued %s", paths.shown(path))

    def _changed_while_queued(self, active: Job, arrival: Arrival) -> None:
        """New content under the name of a job not yet cloaked: the job takes the new content."""
        if active.sha256 == arrival.sha256 or self.is_running(active.id) or active.phase != JobPhase.CLOAK:
            return
        changed: dict[str, object] = {"sha256": arrival.sha256, "size": arrival.size, "mtime": arrival.mtime}
        if active.truncated_sig and arrival.stamp.signature != active.truncated_sig:
            changed["next_try_at"] = 0  # more of a file that was cut short: read it now
        self.ledger.update(active.id, **changed)
        self._arrivals[active.id] = arrival
