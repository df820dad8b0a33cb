"""What a batch tells the person or program running it: a bar on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Counts:
    """Files of this batch: ``skipped`` were done by an earlier run; the rest are this run's."""

    total: int
    skipped: int = 0
    done: int = 0  # ok or incomplete, this run
    incomplete: int = 0
    failed: int = 0
    retried: int = 0
    not_ok: int = 0  # at the end: files of the tree whose last row is failed or incomplete
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.finished

    def per_hour(self) -> float | None:
        elapsed = time.monotonic() - self.started
        return self.finished / elapsed * 3600 if self.finished and elapsed > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.per_hour()
        return self.remaining / rate * 3600 if rate else None

    def as_dict(self) -> dict:
        shown = {k: v for k, v in asdict(self).items() if k != "started"}
        rate, left = self.per_hour(), self.seconds_left()
        shown["per_hour"] = None if rate is None else round(rate, 1)
        shown["seconds_left"] = None if left is None else round(left)
        shown["seconds"] = round(time.monotonic() - self.started, 1)
        return shown


class JsonLines:
    """One JSON object per finished file on stdout (its manifest row, plus the counts so far under
    ``progress``), notes on stderr, and a last ``{"summary": ...}`` line."""

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def started(self, counts: Counts, workers: int) -> None:
        return None

    def file(self, row: dict, counts: Counts) -> None:
        print(json.dumps({**row, "progress": counts.as_dict()}, default=str), flush=True)

    def note(self, message: str) -> None:
        print(f"sfumato: {message}", file=sys.stderr, flush=True)

    def tick(self, counts: Counts) -> None:
        return None

    def summary(self, counts: Counts) -> None:
        print(json.dumps({"summary": counts.as_dict()}), flush=True)


class Bar:
    """A rich progress bar on stderr: files done of all, failed, rate and time left; one line per
    file that failed or came out incomplete, printed above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("cloaking"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}  {task.fields[rate]}  {task.fields[left]}"),
            console=Console(stderr=True),
        )
        self.task = None

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def started(self, counts: Counts, workers: int) -> None:
        self.task = self.progress.add_task("batch", total=counts.total, failed=0, rate="", left="")
        self.note(f"{workers} workers; {counts.skipped} of {counts.total} files already done")
        self.tick(counts)

    def file(self, row: dict, counts: Counts) -> None:
        if row["status"] == "failed":
            self.note(f"failed      {row['error']}")
        elif row["status"] == "incomplete":
            self.note(f"INCOMPLETE  {row['path']} -> {row['output']}  {row.get('reason')}")
        self.tick(counts)

    def note(self, message: str) -> None:
        self.progress.console.print(message, markup=False, highlight=False)

    def tick(self, counts: Counts) -> None:
        rate, left = counts.per_hour(), counts.seconds_left()
        self.progress.update(
            self.task,
            completed=counts.skipped + counts.finished,
            failed=counts.failed,
            rate="" if rate is None else f"{rate:.0f} files/h",
            left="" if left is None else f"{_duration(left)} left",
        )

    def summary(self, counts: Counts) -> None:
        self.tick(counts)
        self.note(
            f"done: {counts.done} cloaked ({counts.incomplete} incomplete), {counts.failed} failed, "
            f"{counts.skipped} already done, in {_duration(time.monotonic() - counts.started)}"
        )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def reporter(json_lines: bool):
    return JsonLines() if json_lines or not sys.stderr.isatty() else Bar()
