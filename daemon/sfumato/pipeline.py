"""File in, file out: read an artwork, cloak it with the engine, write the result crash-safely.

This is the seam between the file world (CLI, daemon) and the tensor world (engine): callers pass
paths and :class:`~sfumato.options.CloakOptions` and get plain data back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sfumato.options import CloakOptions


@dataclass
class CloakOutcome:
    """What happened to one file; ``report`` is JSON-serialisable (target, budget, psnr, ssim...)."""

    input: Path
    output: Path
    status: str  # "ok" or "incomplete"
    target: str
    psnr: float
    ssim: float
    seconds: float
    report: dict = field(default_factory=dict)


class Cloaker:
    """Keeps loaded encoders between files, so a daemon loads its models once."""

    def __init__(self, *, device: str = "auto", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads

    def prepare(self, options: CloakOptions) -> None:
        """Load the encoders ``options`` names now (at daemon start), raising EncoderError early."""
        raise NotImplementedError  # filled in by the engine work

    def cloak_file(
        self,
        src: Path,
        dst: Path,
        options: CloakOptions,
        *,
        overwrite: bool = False,
        progress: Callable[[float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> CloakOutcome:
        """Cloak ``src`` into ``dst`` (temp name, fsync, rename); ``src`` is never touched.

        Raises BadImageError (file will never work), TransientError (retry later), EncoderError
        (configuration), Cancelled (``should_stop`` returned True; nothing written).
        """
        raise NotImplementedError  # filled in by the engine work
