"""The worker side of a batch: an actor that loads the models once and cloaks one file at a time.

Files travel as bytes, in and out, so a worker needs no shared filesystem: it writes the input
into its own scratch folder under the same name, runs the very pipeline ``sfumato cloak`` runs
(read, cloak, quick check, ``INCOMPLETE-`` naming, write), and hands back the written file. The
driver is the only one that writes into DST.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sfumato.cloak_report import CloakReport
from sfumato.errors import SfumatoError, TransientError, UsageError
from sfumato.options import CloakRequest


@dataclass(frozen=True)
class BatchTask:
    rel: str
    sha256: str
    data: bytes
    attempt: int = 1


@dataclass(frozen=True)
class TaskResult:
    """``status``: ok or incomplete (``data`` is the written file, named ``output_name``), failed
    (will never work: ``error`` says why in one sentence), or retry (may work on another try)."""

    rel: str
    status: str
    worker: str
    error: str | None = None
    output_name: str | None = None
    data: bytes | None = None
    report: CloakReport | None = None


@dataclass(frozen=True)
class WorkerSetup:
    options: CloakRequest
    device: str
    threads: int


class CloakWorker:
    """Plain class; the runner wraps it with ``ray.remote`` so this module imports without Ray."""

    def __init__(self, setup: WorkerSetup) -> None:
        from sfumato.pipeline import Cloaker

        self.setup = setup
        self.cloaker = Cloaker(device=setup.device, threads=setup.threads)
        self.scratch = Path(tempfile.mkdtemp(prefix="sfumato-batch-"))
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def prepare(self) -> tuple[str, str] | None:
        """Load the models now; a problem comes back as (kind, sentence) rather than a traceback."""
        try:
            self.cloaker.prepare(self.setup.options)
        except SfumatoError as exc:
            return ("usage" if isinstance(exc, UsageError) else "error", str(exc))
        return None

    def cloak(self, task: BatchTask) -> TaskResult:
        name = PurePosixPath(task.rel).name
        work = Path(tempfile.mkdtemp(dir=self.scratch))
        src, dst = work / "in" / name, work / "out" / name
        try:
            src.parent.mkdir()
            src.write_bytes(task.data)
            outcome = self.cloaker.cloak_file(src, dst, self.setup.options, overwrite=True)
            return TaskResult(
                rel=task.rel,
                status=outcome.status,
                worker=self.name,
                output_name=outcome.output.name,
                data=outcome.output.read_bytes(),
                report=outcome.report,
            )
        except TransientError as exc:
            return TaskResult(task.rel, "retry", self.name, error=_named(str(exc), name, task.rel, work))
        except SfumatoError as exc:
            return TaskResult(task.rel, "failed", self.name, error=_named(str(exc), name, task.rel, work))
        except Exception as exc:  # one bad file never stops the run
            reason = f"{name}: unexpected {type(exc).__name__} while cloaking: {exc}"
            return TaskResult(task.rel, "failed", self.name, error=_named(reason, name, task.rel, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def __del__(self) -> None:
        scratch = getattr(self, "scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _named(message: str, name: str, rel: str, work: Path) -> str:
    """The pipeline names the scratch copy: name the input by its path in SRC instead."""
    message = message.replace(str(work / "in" / name), rel).replace(str(work / "out"), "DST")
    if message.startswith(f"{name}:") and rel != name:
        message = rel + message[len(name) :]
    return " ".join(message.split())  # one line
