"""File in, file out: read an artwork, cloak it with the engine, write the result crash-safely.

This is the seam between the file world (CLI, daemon) and the tensor world (engine): callers pass
paths and a :class:`~sfumato.options.CloakRequest` and get a typed
:class:`~sfumato.cloak_report.CloakReport` back.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfumato.cloak_report import CloakReport
from sfumato.errors import EncoderError, TransientError, UsageError, stop_if_asked
from sfumato.fileops import unique_path
from sfumato.images import MIN_CLOAK_SIDE, read_artwork, write_artwork
from sfumato.options import INCOMPLETE_PREFIX, CloakRequest

log = logging.getLogger(__name__)


@dataclass
class CloakOutcome:
    """What happened to one file; ``report`` is the engine's, completed by the quick check."""

    input: Path
    output: Path
    status: str  # "ok" or "incomplete"
    target: str
    psnr: float
    ssim: float
    seconds: float
    report: CloakReport | None = None  # None only from stand-ins that cloak nothing (tests)
    encoders: tuple[str, ...] = ()  # the ensemble members the cloak was computed against
    left_out: tuple[str, ...] = ()  # members that could not be loaded (offline) and were skipped


def cloak_record(
    src: Path | str,
    dst: Path | str,
    *,
    status: str = "failed",
    error: str | None = None,
    report: CloakReport | None = None,
) -> dict:
    """The JSON object ``sfumato cloak --json`` prints per input (and ``batch`` keeps per file):
    input, output, status, error, target, psnr, ssim, seconds, then the engine's full report."""
    record = {
        "input": str(src),
        "output": str(dst),
        "status": status,
        "error": error,
        "target": None,
        "psnr": None,
        "ssim": None,
        "seconds": None,
    }
    if report is not None:
        record.update(report.to_json())
        record.update(status=status, error=error, output=str(dst))
    return record


class Cloaker:
    """Keeps loaded encoders between files, so a daemon loads its models once."""

    def __init__(self, *, device: str = "auto", threads: int | None = None) -> None:
        self.device_name = device
        self.threads = threads
        self._skipped: dict[str, str] = {}

    def encoders_for(self, options: CloakRequest) -> list:
        """The loaded encoders ``options`` names (members that could not be loaded left out, once,
        where ``options.skip_unavailable_encoders`` allows it)."""
        from sfumato.engine.cloak import load_encoders
        from sfumato.engine.devices import pick_device, set_threads

        set_threads(self.threads if self.threads is not None else options.threads)
        device = pick_device(self.device_name if self.device_name != "auto" else options.device)
        return load_encoders(
            options.encoders,
            device,
            skip_unavailable=options.skip_unavailable_encoders,
            skipped=self._skipped,
        )

    def prepare(self, options: CloakRequest) -> None:
        """Load the encoders ``options`` names now (at daemon start), raising EncoderError early."""
        self.encoders_for(options)
        settings = options.check.resolved()
        if settings.enabled:
            from sfumato.engine.encoders import load_encoder

            try:  # the check falls back to a cloak encoder when its own cannot be loaded
                load_encoder(settings.encoder, self.encoders_for(options)[0].mean.device)
            except EncoderError as exc:
                log.warning("check encoder %s unavailable: %s", settings.encoder, exc)

    def cloak_file(
        self,
        src: Path,
        dst: Path,
        options: CloakRequest,
        *,
        overwrite: bool = False,
        progress: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_output: Callable[[Path], None] | None = None,
    ) -> CloakOutcome:
        """Cloak ``src`` into ``dst`` (temp name, fsync, rename); ``src`` is never touched.

        The output may end up under another name (``INCOMPLETE-...`` when the quick check fails):
        ``on_output`` is called with the final name before anything is written there, so the
        daemon's ledger knows it before a crash could leave it (or its temp file) behind.

        Raises BadImageError (file will never work), TransientError (retry later), EncoderError
        (configuration), Cancelled (``should_stop`` returned True; nothing written).
        """
        from sfumato.engine.cloak import cloak_image
        from sfumato.verify.quick import verdict_for

        src, dst = Path(src), Path(dst)
        if dst.exists() and not overwrite:
            raise UsageError(f"{dst} already exists: use --force to overwrite it")
        if dst.exists() and dst.resolve() == src.resolve():
            raise UsageError(f"{src}: the output would overwrite the input; choose another folder")
        art = read_artwork(src, min_side=MIN_CLOAK_SIDE)
        # Reading a large file, the engine's first import and a model load each take seconds:
        # a stop asked for meanwhile is honoured before the search starts, not after it.
        stop_if_asked(should_stop)
        encoders = self.encoders_for(options)
        stop_if_asked(should_stop)
        try:
            result = cloak_image(
                art.rgb,
                options,
                encoders=encoders,
                bit_depth=art.bit_depth,
                greyscale=art.greyscale,
                progress=progress,
                should_stop=should_stop,
            )
        except MemoryError as exc:
            raise TransientError(f"{src.name}: ran out of memory while cloaking") from exc
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise TransientError(f"{src.name}: ran out of memory while cloaking") from exc
            raise
        skipped = tuple(sorted(s for s in self._skipped if s in options.encoders))
        report = dataclasses.replace(result.report, skipped_encoders=skipped)
        verdict = verdict_for(art.rgb, result.pixels, report, options.check.resolved(), encoders)
        status = "ok"
        if verdict is not None:
            report = dataclasses.replace(report, check=verdict)
            if not verdict.passed:
                # Never passed off as protected: the name says so, the report says why.
                status, report = "incomplete", dataclasses.replace(report, reason=verdict.reason)
                dst = dst.with_name(f"{INCOMPLETE_PREFIX}{dst.name}")
                dst = dst if overwrite else unique_path(dst)
                log.warning("%s is incomplete: %s", src.name, verdict.reason)
        if on_output is not None:
            on_output(dst)
        write_artwork(art, result.pixels, dst, metadata=options.metadata)
        return CloakOutcome(
            input=src,
            output=dst,
            status=status,
            target=report.target,
            psnr=report.psnr,
            ssim=report.ssim,
            seconds=report.seconds,
            report=report,
            encoders=tuple(e.spec for e in encoders),
            left_out=skipped,
        )
