"""The job ledger: one SQLite row per file the daemon has taken, so that nothing is lost.

Each step of a job is recorded *before* it is done (the planned output, the planned place of the
original), so a daemon killed at any moment can tell on restart what is finished and what is
not, and completes every file exactly once. SQLite in WAL mode lets ``sfumato status`` read while
the daemon writes; the daemon is the only writer.

States: ``waiting`` (queued, or interrupted and to be resumed), ``working``, ``done``, ``failed``
(moved to the failed folder), ``duplicate`` (same content as a file already cloaked: moved to
originals, not cloaked again), ``ignored`` (not a JPG/PNG: left where it is), ``removed`` (the
file vanished from the outbox before it was cloaked).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

LEDGER_NAME = "ledger.sqlite3"


class _Stored(str, Enum):
    """An enum whose value is what the ledger stores (a ``str``, so SQL and JSON see it)."""

    def __str__(self) -> str:
        return self.value


class JobState(_Stored):
    """A file's state."""

    WAITING = "waiting"
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REMOVED = "removed"


class JobPhase(_Stored):
    """The step under way (see :mod:`sfumato.jobs`)."""

    CLOAK = "cloak"
    MOVE = "move"
    FAIL = "fail"
    DUPLICATE = "duplicate"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    folder TEXT NOT NULL,          -- the outbox, absolute
    relpath TEXT NOT NULL,         -- path inside the outbox
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    next_try_at REAL NOT NULL DEFAULT 0,
    seconds REAL,
    psnr REAL,
    ssim REAL,
    target TEXT,
    output TEXT,                   -- planned, then actual, cloaked copy
    original_to TEXT,              -- planned, then actual, place of the original
    progress REAL NOT NULL DEFAULT 0,
    phase TEXT NOT NULL DEFAULT 'cloak', -- cloak, move, fail or duplicate: the step under way
    truncated_sig TEXT,            -- size:mtime_ns of a read that found the file cut short
    encoders TEXT                  -- the ensemble members the cloak used, and any left out
);
CREATE INDEX IF NOT EXISTS files_by_content ON files (folder, sha256, state);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, next_try_at);
CREATE TABLE IF NOT EXISTS folder_targets (
    folder TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    chosen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS poison_targets (
    concept TEXT PRIMARY KEY,  -- lower-cased: poison works by every image of a concept agreeing
    target TEXT NOT NULL,
    chosen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

_COLUMNS = [
    *("id", "folder", "relpath", "size", "mtime", "sha256", "state", "attempts", "error"),
    *("queued_at", "started_at", "finished_at", "next_try_at", "seconds", "psnr", "ssim"),
    *("target", "output", "original_to", "progress", "phase", "truncated_sig", "encoders"),
]

# Columns added since the first release: a ledger written by an older daemon gets them on open.
_ADDED_COLUMNS = {"truncated_sig": "TEXT", "encoders": "TEXT"}


@dataclass
class Job:
    """A ledger row: everything known about one file."""

    id: int
    folder: str
    relpath: str
    size: int
    mtime: float
    sha256: str
    state: JobState
    attempts: int
    error: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    next_try_at: float
    seconds: float | None
    psnr: float | None
    ssim: float | None
    target: str | None
    output: str | None
    original_to: str | None
    progress: float
    phase: JobPhase
    truncated_sig: str | None = None  # waiting for the rest of a file that read as truncated
    encoders: str | None = None

    def __post_init__(self) -> None:
        self.state = JobState(self.state)
        self.phase = JobPhase(self.phase)

    @property
    def source(self) -> Path:
        return Path(self.folder) / self.relpath


class Ledger:
    """The daemon's read-write view; one connection shared by its threads behind a lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LEDGER_NAME
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a finished job must survive power loss
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE files ADD COLUMN {name} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: tuple = ()) -> list[Job]:
        with self._lock:
            cursor = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM files {sql}", args)
            return [Job(*row) for row in cursor.fetchall()]

    def get(self, job_id: int) -> Job:
        return self._rows("WHERE id = ?", (job_id,))[0]

    def find_active(self, folder: str, relpath: str) -> Job | None:
        rows = self._rows(
            "WHERE folder = ? AND relpath = ? AND state IN ('waiting', 'working') ORDER BY id",
            (folder, relpath),
        )
        return rows[0] if rows else None

    def history(self, folder: str, relpath: str) -> list[Job]:
        """Every row for this name, oldest first."""
        return self._rows("WHERE folder = ? AND relpath = ? ORDER BY id", (folder, relpath))

    def find_done_content(self, folder: str, sha256: str) -> Job | None:
        rows = self._rows(
            "WHERE folder = ? AND sha256 = ? AND state = 'done' ORDER BY id LIMIT 1",
            (folder, sha256),
        )
        return rows[0] if rows else None

    def find_ignored(self, folder: str, relpath: str, size: int, mtime: float) -> bool:
        rows = self._rows(
            "WHERE folder = ? AND relpath = ? AND state = 'ignored' AND size = ? AND mtime = ?",
            (folder, relpath, size, mtime),
        )
        return bool(rows)

    def add(
        self,
        folder: str,
        relpath: str,
        size: int,
        mtime: float,
        sha256: str,
        *,
        state: JobState = JobState.WAITING,
        phase: JobPhase = JobPhase.CLOAK,
        output: str | None = None,
    ) -> int:
        now = time.time()
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO files (folder, relpath, size, mtime, sha256, state, phase, output, "
                "queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (folder, relpath, size, mtime, sha256, state, phase, output, now),
            )
            return int(cursor.lastrowid)

    def update(self, job_id: int, **fields: object) -> None:
        names = list(fields)
        unknown = set(names) - set(_COLUMNS)
        if unknown:
            raise KeyError(f"unknown ledger columns {sorted(unknown)}")
        with self._tx() as db:
            db.execute(
                f"UPDATE files SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                (*fields.values(), job_id),
            )

    def set_progress(self, job_id: int, progress: float) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET progress = ? WHERE id = ?", (progress, job_id))

    def due(self, now: float) -> list[Job]:
        """Waiting jobs whose retry time has come, oldest first."""
        return self._rows("WHERE state = 'waiting' AND next_try_at <= ? ORDER BY id", (now,))

    def waiting(self) -> list[Job]:
        """Every waiting job, due or not."""
        return self._rows("WHERE state = 'waiting' ORDER BY id")

    def next_retry_at(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try_at) FROM files WHERE state = 'waiting'").fetchone()
        return row[0] if row and row[0] is not None else None

    def next_truncated_at(self, folders: set[str]) -> float | None:
        """When the next file waiting for the rest of its data is looked at again (None: none)."""
        rows = self._rows("WHERE state = 'waiting' AND truncated_sig IS NOT NULL")
        times = [job.next_try_at for job in rows if job.folder in folders]
        return min(times) if times else None

    def recover(self) -> int:
        """After a crash or stop: jobs left ``working`` go back to ``waiting`` to be resumed."""
        with self._tx() as db:
            cursor = db.execute("UPDATE files SET state = 'waiting', progress = 0 WHERE state = 'working'")
            return cursor.rowcount

    def folder_target(self, folder: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT target FROM folder_targets WHERE folder = ?", (folder,)).fetchone()
        return row[0] if row else None

    def set_folder_target(self, folder: str, target: str) -> str:
        """Record the folder's target unless one is already recorded; returns the recorded one."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO folder_targets (folder, target, chosen_at) VALUES (?, ?, ?)",
                (folder, target, time.time()),
            )
        return self.folder_target(folder) or target

    def poison_targets(self) -> dict[str, str]:
        """Auto poison targets chosen so far (concept → target), for every folder alike."""
        with self._lock:
            rows = self._db.execute("SELECT concept, target FROM poison_targets").fetchall()
        return dict(rows)

    def set_poison_target(self, concept: str, target: str) -> str:
        """Record the concept's target unless one is already recorded; returns the recorded one."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO poison_targets (concept, target, chosen_at) VALUES (?, ?, ?)",
                (concept.lower(), target, time.time()),
            )
        return self.poison_targets().get(concept.lower(), target)

    def set_meta(self, **values: object) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, None if v is None else str(v)) for k, v in values.items()],
            )


def open_read_only(state_dir: Path) -> sqlite3.Connection | None:
    """A read-only connection (``sfumato status``, tests); None if the daemon never ran here."""
    path = state_dir / LEDGER_NAME
    if not path.exists():
        return None
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    return db


@dataclass(frozen=True)
class StateCount:
    """How many files of one folder are in one state."""

    folder: str
    state: JobState
    count: int


class LedgerReader:
    """Read-only queries for ``sfumato status``, safe while the daemon writes (WAL).

    Raises :class:`sqlite3.Error` as SQLite does; ``no such table`` means the daemon is creating
    the ledger right now. A ledger written by an older daemon may lack the columns added since
    (it cannot be migrated read-only): those read as None.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._columns: list[str] | None = None

    @classmethod
    def open(cls, state_dir: Path) -> LedgerReader | None:
        """None if the daemon never ran with this state folder."""
        db = open_read_only(state_dir)
        return None if db is None else cls(db)

    def close(self) -> None:
        self._db.close()

    def meta(self) -> dict[str, str | None]:
        return {row["key"]: row["value"] for row in self._db.execute("SELECT key, value FROM meta")}

    def state_counts(self) -> list[StateCount]:
        rows = self._db.execute("SELECT folder, state, COUNT(*) AS n FROM files GROUP BY 1, 2")
        return [StateCount(r["folder"], JobState(r["state"]), r["n"]) for r in rows]

    def folder_targets(self) -> dict[str, str]:
        """The auto-style target chosen per folder."""
        rows = self._db.execute("SELECT folder, target FROM folder_targets")
        return {r["folder"]: r["target"] for r in rows}

    def working(self) -> list[Job]:
        """The jobs being cloaked now, first started first."""
        return self._jobs("WHERE state = ? ORDER BY started_at", (JobState.WORKING,))

    def latest(self, state: JobState, limit: int) -> list[Job]:
        """The last ``limit`` jobs that ended in ``state``, most recent first."""
        return self._jobs("WHERE state = ? ORDER BY finished_at DESC LIMIT ?", (state, limit))

    def cloaked_target(self, sha256: str) -> str | None:
        """The target the daemon last cloaked this content toward, in any folder (for ``sfumato
        check --style auto``); None where it never finished cloaking it here."""
        row = self._db.execute(
            "SELECT target FROM files WHERE sha256 = ? AND state = ? AND target IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (sha256, JobState.DONE),
        ).fetchone()
        return None if row is None else row["target"]

    def _jobs(self, sql: str, args: tuple) -> list[Job]:
        if self._columns is None:
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(files)")}
            self._columns = [c for c in _COLUMNS if c in present or not present]  # none: "no such table"
        cursor = self._db.execute(f"SELECT {', '.join(self._columns)} FROM files {sql}", args)
        return [Job(**dict(zip(self._columns, row, strict=True))) for row in cursor]
