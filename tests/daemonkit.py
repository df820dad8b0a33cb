"""Helpers for the daemon's tests: folders, configs, tiny PNGs, a stand-in cloaker, waiting."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from sfumato.errors import BadImageError, Cancelled, TransientError, TruncatedImageError
from sfumato.fileops import atomic_write_bytes, unique_path
from sfumato.images.sniffing import looks_unfinished
from sfumato.pipeline import CloakOutcome

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The real engine with the smallest settings there are (used by the end-to-end tests).
TINY_ENGINE = """
[defaults]
encoders = ["openclip:sfumato-tiny/random"]
quality = "fast"
steps = {steps}
device = "cpu"
threads = 1
skip_unavailable_encoders = false
[defaults.check]
enabled = false
"""


def png_bytes(seed: int = 0, size: int = 48) -> bytes:
    """A small PNG whose content (and so hash) depends on ``seed``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def folder_block(root: Path, name: str = "art", extra: str = "") -> str:
    return (
        f'[[folders]]\noutbox = "{root / name / "outbox"}"\nready = "{root / name / "ready"}"\n'
        f'originals = "{root / name / "originals"}"\nfailed = "{root / name / "failed"}"\n{extra}\n'
    )


def write_config(root: Path, *, daemon: str = "", defaults: str = "", folders: str | None = None) -> Path:
    """A config with one folder under ``root/art`` and a ledger in ``root/state``."""
    text = f'[daemon]\nstate_dir = "{root / "state"}"\nsettle_seconds = 0.2\n{daemon}\n'
    if defaults:
        text += f"[defaults]\n{defaults}\n"
    text += folder_block(root) if folders is None else folders
    path = root / "config.toml"
    path.write_text(text)
    return path


def art(root: Path, name: str = "art") -> dict[str, Path]:
    return {role: root / name / role for role in ("outbox", "ready", "originals", "failed")}


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (temp files included: none must ever be left)."""
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def wait_for(condition: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


class FakeCloaker:
    """Stands in for :class:`sfumato.pipeline.Cloaker` where the engine is not what is tested.

    Like the engine: refuses non-PNG content, writes atomically, honours ``should_stop``. The
    "cloak" is the input with a marker in front, so a test can tell which input made an output.
    """

    MARK = b"cloaked:"

    def __init__(
        self,
        *,
        delay: float = 0.0,
        transient_failures: int = 0,
        target="pixelart",
        crash: bool = False,
        incomplete: bool = False,
        hold: float = 0.0,
        hold_temp: float = 0.0,
        calls_file: Path | None = None,
        encoders: tuple[str, ...] = (),
        skipped: tuple[str, ...] = (),
    ):
        """``crash``: SIGKILL its own process mid-cloak (as an out-of-memory kill or a native
        crash would); ``incomplete``: name the output ``INCOMPLETE-...`` as the quick check does;
        ``hold``: seconds to wait after the output is in place, before returning (a window for a
        test's SIGKILL); ``hold_temp``: the same with the output still under its hidden temp name;
        ``calls_file``: one line per cloak, counted across processes."""
        self.delay = delay
        self.transient_failures = transient_failures
        self.target = target
        self.crash = crash
        self.incomplete = incomplete
        self.hold = hold
        self.hold_temp = hold_temp
        self.calls_file = calls_file
        self.encoders = encoders
        self.skipped = skipped
        self.prepared: list = []
        self.calls: list = []
        self.lock = threading.Lock()

    def __call__(self, device: str, threads: int | None) -> FakeCloaker:
        return self  # usable as the daemon's cloaker factory

    def prepare(self, options) -> None:
        self.prepared.append(options)

    def cloak_file(
        self, src, dst, options, *, overwrite=False, progress=None, should_stop=None, on_output=None
    ):
        with self.lock:
            self.calls.append((Path(src), options))
            if self.calls_file is not None:
                with open(self.calls_file, "a") as handle:
                    handle.write(f"{Path(src).name}\n")
            if self.crash:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.transient_failures:
                self.transient_failures -= 1
                raise TransientError(f"could not write {dst}: No space left on device")
        data = Path(src).read_bytes()
        if data.startswith(PNG_MAGIC) and looks_unfinished(data):  # as the image reader tells it
            raise TruncatedImageError(f"{Path(src).name}: the image is truncated")
        if not data.startswith(PNG_MAGIC) or len(data) < 60:
            raise BadImageError(f"{src} is not a readable image: the data is truncated or corrupt")
        for step in range(4):
            if should_stop and should_stop():
                raise Cancelled("stopped")
            if progress:
                progress(step / 4)
            time.sleep(self.delay / 4)
        if Path(dst).exists() and not overwrite:
            raise FileExistsError(dst)
        status = "ok"
        if self.incomplete:  # as the pipeline names a cloak its quick check did not pass
            status, dst = "incomplete", unique_path(Path(dst).with_name("INCOMPLETE-" + Path(dst).name))
        if on_output is not None:
            on_output(Path(dst))
        if self.hold_temp:  # the engine's writer: a hidden temp name, then a rename
            fd, temp = tempfile.mkstemp(
                prefix=f".{Path(dst).name}.", suffix=".sfumato-tmp", dir=Path(dst).parent
            )
            os.write(fd, self.MARK + data)
            os.close(fd)
            time.sleep(self.hold_temp)
            os.replace(temp, dst)
        else:
            atomic_write_bytes(Path(dst), self.MARK + data)
        time.sleep(self.hold)
        target = self.target if options.style == "auto" else options.style
        return CloakOutcome(Path(src), Path(dst), status, target, 41.5, 0.99, 0.01)


def daemon_env(home: Path) -> dict[str, str]:
    """Environment for a daemon subprocess: this checkout's code, a private home, no systemd."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SFUMATO_", "XDG_"))}
    env.pop("NOTIFY_SOCKET", None)
    env.update(HOME=str(home), PYTHONPATH=str(REPO / "daemon"), PYTHONUNBUFFERED="1")
    return env


def start_daemon(
    config: Path | None, home: Path, *args: str, env: dict | None = None, fake: dict | None = None
) -> subprocess.Popen:
    """``sfumato run`` in its own process; with ``fake`` (FakeCloaker's keyword arguments) the
    same command, models replaced by the stand-in cloaker (see ``fakedaemon.py``)."""
    command = [sys.executable, "-m", "sfumato", "run", *args]
    if fake is not None:
        command = [sys.executable, str(REPO / "tests" / "fakedaemon.py"), json.dumps(fake), *args]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.Popen(
        command,
        env={**daemon_env(home), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class LogReader:
    """Collects a subprocess's output lines in the background so tests can wait for one."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0) -> bool:
        return wait_for(lambda: any(text in line for line in self.lines), timeout)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
