"""One file's journey: cloak into ready, then move the original to originals (or both to failed).

Every step is planned in the ledger before it is taken, so a job interrupted anywhere (SIGKILL,
power loss) is finished on the next start without doing anything twice:

* ``cloak``: the output name is recorded, then the engine writes it atomically. If the recorded
  output exists on restart, the cloak was finished and is not redone.
* ``move``: the original's destination is recorded, then it is moved (copy, fsync, rename, and
  only then unlink across filesystems). An identical copy already at the destination means the
  move was interrupted after copying: only the source is removed.
* ``fail``: same as ``move``, into the failed folder, plus ``<name>.error.txt``.
* ``duplicate``: content already cloaked in this folder: moved to originals without cloaking.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfumato.cloak_report import PoisonReport
from sfumato.errors import BadImageError, Cancelled, TransientError, TruncatedImageError
from sfumato.fileops import atomic_write_bytes, file_sha256, fsync_dir, safe_move, unique_path
from sfumato.folders import results_problem
from sfumato.intake import Arrival, examine
from sfumato.ledger import Job, JobPhase, JobState, Ledger
from sfumato.options import INCOMPLETE_PREFIX, CloakRequest
from sfumato.paths import FolderPaths

log = logging.getLogger("sfumato.daemon")

PROGRESS_EVERY = 0.5  # seconds between progress writes to the ledger


def _what_it_is(head: bytes) -> str:
    from sfumato.images.sniffing import describe_other  # late: sfumato.images loads PIL and OpenCV

    return describe_other(head)


def file_signature(path: Path) -> str | None:
    """Size and mtime: whether a file changed since it was last read (None if it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class JobEnd:
    """How a run of a job ended: the job's new state, and whether its folder's results could not
    be written (the daemon then pauses that folder; the job waits, its attempt not counted)."""

    state: JobState
    folder_broken: bool = False


def _same_content(path: Path, sha256: str) -> bool:
    try:
        return file_sha256(path) == sha256
    except OSError:
        return False


def _remove_stale_temps(planned: Path) -> None:
    """Temp files a killed daemon left next to a planned output: ours, hidden, never complete."""
    with contextlib.suppress(OSError):
        for temp in planned.parent.glob(f".{glob.escape(planned.name)}.*sfumato-tmp"):
            temp.unlink()


def _as_planned(recorded: Path, relpath: str) -> Path:
    """The name to cloak into again after a crash: a recorded ``INCOMPLETE-`` name that never
    landed goes back to the plain one, else a second try would be ``INCOMPLETE-INCOMPLETE-``."""
    if recorded.name.startswith(INCOMPLETE_PREFIX) and not Path(relpath).name.startswith(INCOMPLETE_PREFIX):
        return recorded.with_name(recorded.name.removeprefix(INCOMPLETE_PREFIX))
    return recorded


def describe_ensemble(ensemble: dict) -> str:
    """``encoders A + B (left out: C)``, for the done line and ``sfumato status``."""
    text = "encoders " + " + ".join(ensemble.get("used", []))
    if ensemble.get("left_out"):
        text += f" (left out: {', '.join(ensemble['left_out'])})"
    return text


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else text + "."


class JobRunner:
    """Runs ledger jobs with a shared cloaker; safe to call from several worker threads."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_attempts: int,
        retry_backoff: float,
        max_file_mb: float,
        stop: threading.Event,
        on_status: Callable[[str], None] | None = None,
        truncated_wait: float = 0.0,
    ) -> None:
        self.ledger = ledger
        self.truncated_wait = truncated_wait
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.max_file_bytes = int(max_file_mb * 1024 * 1024)
        self.stop = stop
        self.on_status = on_status or (lambda text: None)
        self._poison_notes: dict[int, str] = {}  # job id → poison figures for its "done" line

    def run(
        self,
        job: Job,
        paths: FolderPaths,
        options: CloakRequest,
        cloaker,
        *,
        auto_style: bool,
        arrival: Arrival | None = None,
    ) -> JobEnd:
        """Take ``job`` as far as it goes. ``arrival``: what intake found (None after a restart:
        the job then looks at the file itself)."""
        end = self._advance(job, paths, options, cloaker, auto_style=auto_style, arrival=arrival)
        return end if isinstance(end, JobEnd) else JobEnd(end)

    def _advance(
        self,
        job: Job,
        paths: FolderPaths,
        options: CloakRequest,
        cloaker,
        *,
        auto_style: bool,
        arrival: Arrival | None,
    ) -> JobState | JobEnd:
        src = job.source
        # Each attempt is counted (and durable) before its work starts, and a stop on request
        # gives it back; so a cloak still at the limit here ended with the daemon dying under it
        # (out of memory, a native crash). Such an image is failed, not tried for ever.
        died_every_time = job.phase == JobPhase.CLOAK and job.attempts >= self.max_attempts
        if not died_every_time:
            job.attempts += 1
        self.ledger.update(
            job.id, state=JobState.WORKING, attempts=job.attempts, started_at=time.time(), progress=0.0
        )
        for planned in (job.output, job.original_to):
            if planned:
                _remove_stale_temps(Path(planned))
        try:
            if died_every_time:
                reason = (
                    f"gave up after {job.attempts} attempts: the daemon died while cloaking it "
                    "(out of memory, a crash or a kill)"
                )
                return self._fail(job, paths, reason)
            if job.phase == JobPhase.FAIL:
                return self._fail(job, paths, job.error or "could not be cloaked")
            if job.phase == JobPhase.DUPLICATE:
                return self._duplicate(job, paths)
            if not src.exists():
                return self._vanished(job, paths)
            if job.phase == JobPhase.CLOAK:
                seen = file_signature(src)  # before reading: what a truncated read saw
                try:
                    self._check_input(job, paths, arrival)
                    self._cloak(job, paths, options, cloaker, auto_style=auto_style)
                except TruncatedImageError as exc:
                    return self._wait_for_rest(job, paths, str(exc), seen)
            return self._move_original(job, paths, arrival)
        except BadImageError as exc:
            if job.truncated_sig:  # complete now, but bad for another reason
                job.truncated_sig = None
                self.ledger.update(job.id, truncated_sig=None)
            return self._fail(job, paths, str(exc))
        except Cancelled:
            self.ledger.update(job.id, state=JobState.WAITING, attempts=job.attempts - 1, progress=0.0)
            log.info("stopped %s: it will be resumed on the next start", paths.shown(src))
            return JobState.WAITING
        except Exception as exc:  # transient or unexpected: retry with backoff, then fail
            if isinstance(exc, OSError) and results_problem(paths.folder) is not None:
                # The ready, originals or failed folder broke under the job: not the picture's
                # fault, and not one of its attempts. The daemon pauses the folder.
                self.ledger.update(job.id, state=JobState.WAITING, attempts=job.attempts - 1, progress=0.0)
                return JobEnd(JobState.WAITING, folder_broken=True)
            return self._retry_or_fail(job, paths, exc)

    def _check_input(self, job: Job, paths: FolderPaths, arrival: Arrival | None) -> None:
        src = job.source
        if arrival is None:  # resumed after a restart: intake's findings were not kept
            arrival = examine(src, image_name=True, digest=False)
            if arrival is None:
                raise BadImageError(f"{src.name} is not a file")
        size = arrival.size
        if size == 0:
            raise BadImageError(f"{src.name} is empty (0 bytes)")
        if size > self.max_file_bytes:
            raise BadImageError(
                f"{src.name} is {size / 1048576:.0f} MB, larger than the "
                f"{self.max_file_bytes / 1048576:g} MB limit (daemon.max_file_mb)"
            )
        if arrival.kind is None:
            earlier = self._earlier_piece(job)
            if earlier is not None:
                raise BadImageError(
                    f"{src.name} does not start like an image, and a truncated file of that name "
                    f"was failed before it: it looks like the rest of that file (now "
                    f"{paths.shown(earlier)}), which it completes when the two are joined"
                )
            raise BadImageError(f"{src.name} is not a PNG or JPEG image: {_what_it_is(arrival.head)}")

    def _earlier_piece(self, job: Job) -> Path | None:
        """A headerless file under a name whose last file was failed as truncated: its rest,
        written after the wait ran out. Said so, rather than called an unknown kind of file."""
        rows = [r for r in self.ledger.history(job.folder, job.relpath) if r.id != job.id]
        last = rows[-1] if rows else None
        if last is None or last.state != JobState.FAILED or not last.truncated_sig or not last.original_to:
            return None
        return Path(last.original_to)

    def _wait_for_rest(self, job: Job, paths: FolderPaths, reason: str, seen: str | None) -> JobState:
        """A file cut short stays in the outbox: it is read again when it changes, and failed
        whole once it has stayed the same, still truncated, for ``truncated_wait`` seconds."""
        now = time.time()
        unchanged = seen is not None and seen == job.truncated_sig
        if self.truncated_wait <= 0 or (unchanged and now >= job.next_try_at):
            job.truncated_sig = seen or "gone"  # remembered: a headerless rest may follow it
            self.ledger.update(job.id, truncated_sig=job.truncated_sig)
            quiet = f", and it did not change for {self.truncated_wait:g} s" if self.truncated_wait else ""
            return self._fail(job, paths, reason + quiet)
        deadline = job.next_try_at if unchanged else now + self.truncated_wait
        self.ledger.update(
            job.id,
            state=JobState.WAITING,
            attempts=job.attempts - 1,  # not the picture's try: its writer has not finished
            truncated_sig=seen,
            next_try_at=deadline,
            error=reason,
            progress=0.0,
        )
        if not unchanged:
            log.info(
                "%s is truncated, most likely still being written: left in the outbox until it "
                "changes (failed if it stays so for %g s)",
                paths.shown(job.source),
                self.truncated_wait,
            )
        return JobState.WAITING

    def _cloak(
        self, job: Job, paths: FolderPaths, options: CloakRequest, cloaker, *, auto_style: bool
    ) -> None:
        planned = Path(job.output) if job.output else None
        if planned is not None and planned.exists():
            log.info("%s was already cloaked before a restart", paths.shown(job.source))
        else:
            if planned is None:
                planned = unique_path(paths.ready_path(job.relpath))
                self.ledger.update(job.id, output=str(planned))
            else:
                planned = _as_planned(planned, job.relpath)
            planned.parent.mkdir(parents=True, exist_ok=True)
            self.on_status(f"cloaking {paths.shown(job.source)}")

            def record_output(final: Path) -> None:
                """The final name (``INCOMPLETE-...`` perhaps) is in the ledger before the rename."""
                if str(final) != job.output:
                    job.output = str(final)
                    self.ledger.update(job.id, output=str(final))

            outcome = cloaker.cloak_file(
                job.source,
                planned,
                options,
                overwrite=False,
                progress=self._progress_writer(job.id),
                should_stop=self.stop.is_set,
                on_output=record_output,
            )
            target = outcome.target
            if auto_style and target:
                target = self.ledger.set_folder_target(paths.folder.key, target)
            self._note_poison(job, outcome.report.poison if outcome.report else None)
            job.output, job.psnr, job.seconds, job.target = (
                str(outcome.output),
                outcome.psnr,
                outcome.seconds,
                outcome.target,
            )
            ensemble = {"used": list(outcome.encoders), "left_out": list(outcome.left_out)}
            job.encoders = json.dumps(ensemble) if outcome.encoders else None
            self.ledger.update(
                job.id,
                output=str(outcome.output),
                psnr=outcome.psnr,
                ssim=outcome.ssim,
                seconds=outcome.seconds,
                target=outcome.target,
                encoders=job.encoders,
            )
            if outcome.status != "ok":
                log.warning("%s: cloak is %s", paths.shown(job.source), outcome.status)
        job.phase = JobPhase.MOVE
        self.ledger.update(job.id, phase=JobPhase.MOVE, progress=1.0, truncated_sig=None)

    def _note_poison(self, job: Job, poison: PoisonReport | None) -> None:
        """Record an auto target for its concept and keep the figures for the job's log line."""
        if not poison:
            return
        if poison.target_auto:
            self.ledger.set_poison_target(poison.concept, poison.target)
        confidence = poison.concept_confidence
        shown = f" ({confidence:.0%})" if confidence is not None else ""
        success = poison.targeted_success
        self._poison_notes[job.id] = f"poison {poison.concept}{shown} -> {poison.target}" + (
            f", surrogate top-5 {success:.0%}" if success is not None else ""
        )

    def _progress_writer(self, job_id: int) -> Callable[[float], None]:
        last = [0.0]

        def progress(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self.ledger.set_progress(job_id, float(fraction))

        return progress

    def _place(self, job: Job, destination: Path) -> Path:
        """Move the source to ``destination`` (planned in the ledger first), finishing an
        interrupted move instead of copying twice."""
        src = job.source
        planned = Path(job.original_to) if job.original_to else None
        if planned is not None and planned.exists() and _same_content(planned, job.sha256):
            if src.exists():
                os.unlink(src)
                fsync_dir(src.parent)
            return planned
        if planned is None or planned.exists():
            planned = unique_path(destination)
            job.original_to = str(planned)
            self.ledger.update(job.id, original_to=str(planned))
        moved = safe_move(src, planned)
        if moved != planned:
            self.ledger.update(job.id, original_to=str(moved))
        return moved

    def _move_original(self, job: Job, paths: FolderPaths, arrival: Arrival | None) -> JobState:
        unchanged = arrival.unchanged() if arrival is not None else False
        if not unchanged and not _same_content(job.source, job.sha256):
            # Rewritten while we cloaked it: keep it in the outbox to be cloaked as new content.
            self.ledger.update(job.id, state=JobState.DONE, finished_at=time.time(), progress=1.0)
            log.info("%s changed while it was cloaked: it will be cloaked again", paths.shown(job.source))
            return JobState.DONE
        moved = self._place(job, paths.originals_path(job.relpath))
        self.ledger.update(
            job.id, state=JobState.DONE, original_to=str(moved), finished_at=time.time(), progress=1.0
        )
        details = []
        if job.seconds is not None:
            details.append(f"in {job.seconds:.1f} s")
        if job.psnr is not None:
            details.append(f"PSNR {job.psnr:.1f} dB")
        if job.target:
            details.append(f"target {job.target}")
        if job.encoders:  # which members: one may have been left out (offline)
            details.append(describe_ensemble(json.loads(job.encoders)))
        if job.id in self._poison_notes:
            details.append(self._poison_notes.pop(job.id))
        log.info(
            "done %s -> %s %s",
            paths.shown(job.source),
            paths.shown(job.output or "?"),
            ", ".join(details),
        )
        return JobState.DONE

    def _duplicate(self, job: Job, paths: FolderPaths) -> JobState:
        if not job.source.exists() and not job.original_to:
            return self._vanished(job, paths)
        moved = self._place(job, paths.originals_path(job.relpath))
        self.ledger.update(job.id, state=JobState.DUPLICATE, original_to=str(moved), finished_at=time.time())
        log.info(
            "duplicate %s: same content as %s, already cloaked; moved to %s without cloaking again",
            paths.shown(job.source),
            paths.shown(job.output or "?"),
            paths.shown(moved),
        )
        return JobState.DUPLICATE

    def _vanished(self, job: Job, paths: FolderPaths) -> JobState:
        planned = Path(job.original_to) if job.original_to else None
        if planned is not None and planned.exists() and job.phase in (JobPhase.MOVE, JobPhase.DUPLICATE):
            state = JobState.DUPLICATE if job.phase == JobPhase.DUPLICATE else JobState.DONE
            self.ledger.update(job.id, state=state, finished_at=time.time(), progress=1.0)
            return state
        if planned is not None and planned.exists() and job.phase == JobPhase.FAIL:
            self._write_error(planned, job.error or "could not be cloaked")
            self.ledger.update(job.id, state=JobState.FAILED, finished_at=time.time())
            return JobState.FAILED
        self.ledger.update(
            job.id,
            state=JobState.REMOVED,
            error="the file was removed from the outbox before it was cloaked",
            finished_at=time.time(),
        )
        log.warning("%s disappeared before it was cloaked", paths.shown(job.source))
        return JobState.REMOVED

    def _write_error(self, failed_copy: Path, reason: str) -> None:
        note = failed_copy.with_name(failed_copy.name + ".error.txt")
        if not note.exists():
            atomic_write_bytes(note, (_sentence(reason) + "\n").encode("utf-8"))

    def _fail(self, job: Job, paths: FolderPaths, reason: str) -> JobState:
        reason = _sentence(reason)
        if job.phase != JobPhase.FAIL:
            job.phase, job.error = JobPhase.FAIL, reason
            self.ledger.update(job.id, phase=JobPhase.FAIL, error=reason, original_to=None)
            job.original_to = None
        if not job.source.exists():
            return self._vanished(job, paths)
        moved = self._place(job, paths.failed_path(job.relpath))
        self._write_error(moved, reason)
        self.ledger.update(job.id, state=JobState.FAILED, original_to=str(moved), finished_at=time.time())
        log.error("failed %s -> %s: %s", paths.shown(job.source), paths.shown(moved), reason)
        return JobState.FAILED

    def _retry_or_fail(self, job: Job, paths: FolderPaths, exc: Exception) -> JobState:
        if isinstance(exc, TransientError | OSError):
            reason = str(exc)
        elif isinstance(exc, MemoryError):
            reason = "out of memory"
        else:
            log.exception("unexpected error on %s", paths.shown(job.source))
            reason = f"{type(exc).__name__}: {exc}"
        if job.attempts >= self.max_attempts:
            with contextlib.suppress(Exception):
                return self._fail(job, paths, f"gave up after {job.attempts} attempts: {reason}")
            self.ledger.update(job.id, state=JobState.WAITING, next_try_at=time.time() + 3600)
            return JobState.WAITING
        delay = self.retry_backoff * 2 ** (job.attempts - 1)
        self.ledger.update(
            job.id, state=JobState.WAITING, error=reason, next_try_at=time.time() + delay, progress=0.0
        )
        log.warning(
            "%s: %s; retrying in %.0f s (attempt %d of %d)",
            paths.shown(job.source),
            reason,
            delay,
            job.attempts,
            self.max_attempts,
        )
        return JobState.WAITING
