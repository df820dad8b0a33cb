"""The batch manifest: one JSON line per finished file in DST, the record of what is done.

Only the driver writes it, one row at a time, flushed and fsynced, and a row is written only
after its output has been renamed into place. So a row always names a complete output; an output
without a row (a crash between the two) is simply cloaked again and overwritten. A crash in the
middle of a row leaves a torn last line, which is cut off when the manifest is next opened. An
advisory lock keeps a second batch from writing into the same DST at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from sfumato.errors import UsageError
from sfumato.fileops import fsync_dir

DONE_STATUSES = ("ok", "incomplete")


class Manifest:
    """Open with :meth:`open`; rows by relative input path, the last row of a path winning."""

    def __init__(self, path: Path, handle, rows: dict[str, dict]) -> None:
        self.path = path
        self._handle = handle
        self.rows = rows

    @classmethod
    def open(cls, dst: Path, name: str, *, force: bool = False) -> Manifest:
        """Lock and load ``dst/name``, creating it (and ``dst``) before any output is written.

        A DST that already holds files but no manifest is refused without ``force``: they are not
        ours, and a batch overwrites outputs it has no row for.
        """
        dst = Path(dst)
        path = dst / name
        if not path.exists() and dst.is_dir() and not force:
            stray = next((p for p in dst.iterdir() if not p.name.startswith(".")), None)
            if stray is not None:
                raise UsageError(
                    f"{dst} already holds files ({stray.name}) but no {name}: choose an empty "
                    "output folder, or pass --force to write into it (same names are overwritten)"
                )
        dst.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - held open (and locked) for the whole run
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(f"another sfumato batch is writing into {dst}: wait for it to finish") from None
        rows = cls._load(handle)
        os.fsync(handle.fileno())
        fsync_dir(dst)
        return cls(path, handle, rows)

    @staticmethod
    def _load(handle) -> dict[str, dict]:
        handle.seek(0)
        data = handle.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a row torn by a crash: cut it off, it was never done
            handle.truncate(complete)
        rows: dict[str, dict] = {}
        for line in data[:complete].splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get("path"), str):
                    rows[row["path"]] = row
        return rows

    def done(self, rel: str, sha256: str, settings: dict, dst: Path) -> dict | None:
        """The row that makes ``rel`` done: same input bytes, same settings, output still there."""
        row = self.rows.get(rel)
        if not row or row.get("status") not in DONE_STATUSES:
            return None
        if row.get("sha256") != sha256 or row.get("settings") != settings:
            return None
        output = row.get("output_path")
        return row if output and (Path(dst) / output).is_file() else None

    def append(self, row: dict) -> None:
        line = json.dumps(row, separators=(",", ":"), default=str).encode() + b"\n"
        self._handle.seek(0, os.SEEK_END)
        self._handle.write(line)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.rows[row["path"]] = row

    def close(self) -> None:
        self._handle.close()  # closing releases the lock

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
