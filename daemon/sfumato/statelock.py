"""One daemon per state directory.

Two daemons on one config (a service plus a manual ``sfumato run``, or a cron ``run --once``)
would both take the same files: an image cloaked twice, a second ``done`` row in the ledger. The
first one holds an exclusive ``flock`` on ``daemon.lock`` in the state directory, with its PID in
it; a second one is refused in one sentence naming that PID. The kernel drops the lock when its
holder dies, SIGKILL included, so a stale lock file never blocks a restart. ``sfumato status``
only reads the ledger and takes no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sfumato.errors import ConfigError, SfumatoError

try:
    import fcntl
except ImportError:  # Windows: not a supported platform for the daemon; no lock there
    fcntl = None

LOCK_NAME = "daemon.lock"


class StateDirBusy(SfumatoError):
    """Another daemon already works on this state directory (exit status 1)."""


class StateLock:
    """Held from :meth:`acquire` until :meth:`release` or the process ends."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{state_dir}: cannot use the state folder ({exc.strerror})") from None
        if fcntl is None:
            return cls(path, fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise StateDirBusy(
                f"another sfumato daemon ({who}) is already running with the state folder "
                f"{state_dir}: stop it first, or give this one another daemon.state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
