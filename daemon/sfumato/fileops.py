"""Crash-safe file operations: nothing half-written ever appears under a final name."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sfumato.errors import TransientError

_TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EAGAIN, errno.EBUSY}


def is_transient_oserror(exc: OSError) -> bool:
    """Disk full, quota, memory, busy: worth retrying later rather than failing the file."""
    return exc.errno in _TRANSIENT_ERRNOS


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: Path) -> str:
    """The content's identity: what the ledger dedupes on and pinned weights are checked by."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_durably(target: Path, fill: Callable[[BinaryIO, str], None], what: str) -> None:
    """Fill a hidden temp file next to ``target``, fsync it and rename it over ``target``.

    ``fill(handle, temp_name)`` writes the content; a failure removes the temp file, and a
    full disk or quota becomes a :class:`TransientError` (worth a retry, not a failed picture).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".sfumato-tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle, tmp)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_transient_oserror(exc):
            raise TransientError(f"could not {what}: {exc.strerror}") from exc
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a hidden temp name in the same folder, fsync, then rename over ``path``.

    The file gets the permissions an ordinary new file would (mkstemp's are owner-only), so a
    cloaked copy can be shared or uploaded like any other picture.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def fill(handle: BinaryIO, _tmp: str) -> None:
        os.fchmod(handle.fileno(), 0o666 & ~_umask())
        handle.write(data)

    _write_durably(path, fill, f"write {path}")
    fsync_dir(path.parent)


def unique_path(path: Path) -> Path:
    """``name.png`` if free, else ``name-1.png``, ``name-2.png``...: never an overwrite."""
    path = Path(path)
    if not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    n = 1
    while True:
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def safe_move(src: Path, dst: Path) -> Path:
    """Move ``src`` to ``dst`` (or a numbered variant), across filesystems too; returns the target.

    Across filesystems the file is copied to a temp name, fsynced, renamed, and only then is the
    source removed, so a crash at any point leaves at least one complete copy.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    target = unique_path(dst)
    try:
        os.link(src, target)  # atomic, fails if target exists, same filesystem only
    except FileExistsError:
        return safe_move(src, dst)
    except OSError:

        def fill(out: BinaryIO, tmp: str) -> None:
            with open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            shutil.copystat(src, tmp)

        _write_durably(target, fill, f"move {src} to {target}")
    fsync_dir(target.parent)
    os.unlink(src)
    fsync_dir(src.parent)
    return target
