"""The daemon end to end: real folders, real watchdog observers, a ledger, a cloaker.

In-process tests use a stand-in cloaker (``daemonkit.FakeCloaker``) where the engine is not the
point; the tests marked ``engine`` run ``python -m sfumato run`` with the real engine and a tiny
random encoder, and kill it (SIGKILL, SIGTERM) to check that nothing is lost or done twice.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from daemonkit import (
    TINY_ENGINE,
    FakeCloaker,
    LogReader,
    art,
    daemon_env,
    files_under,
    folder_block,
    png_bytes,
    start_daemon,
    wait_for,
    write_config,
)
from sfumato.cli import main
from sfumato.config import load_config
from sfumato.daemon import Daemon
from sfumato.fileops import file_sha256
from sfumato.ledger import Ledger, open_read_only

MARK = FakeCloaker.MARK


def run_once(config_path: Path, cloaker: FakeCloaker, status: int = 0) -> None:
    """``run --once`` in this process; exit status 1 when a file was left for a retry."""
    config = load_config(config_path)
    assert Daemon(config, config_path=config_path, cloaker_factory=cloaker).run(once=True) == status


def states(root: Path) -> list[tuple[str, str]]:
    """(file, state) per ledger row, read as ``sfumato status`` does; [] before the first run."""
    db = open_read_only(root / "state")
    if db is None:
        return []
    try:
        rows = db.execute("SELECT relpath, state FROM files ORDER BY id").fetchall()
        return [tuple(row) for row in rows]
    except sqlite3.OperationalError:  # created a moment ago, tables not there yet
        return []
    finally:
        db.close()


class Running:
    """A watching daemon on a background thread (signals are tested in a subprocess)."""

    def __init__(self, config_path: Path, cloaker: FakeCloaker) -> None:
        self.daemon = Daemon(load_config(config_path), config_path=config_path, cloaker_factory=cloaker)
        self.status: list[int] = []
        self.thread = threading.Thread(target=lambda: self.status.append(self.daemon.run()))
        self.thread.start()
        assert wait_for(lambda: self.daemon.watcher is not None and self.daemon.pool.threads, 10)

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive() and self.status == [0]


@pytest.fixture
def running(tmp_path):
    started: list[Running] = []

    def start(config_path: Path, cloaker: FakeCloaker) -> Running:
        started.append(Running(config_path, cloaker))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.thread.is_alive():
            daemon.stop()


# ----- in-process, stand-in cloaker ---------------------------------------------------------


def test_waiting_files_are_cloaked_to_ready_and_originals_kept_untouched(tmp_path):
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "sunflowers.png").write_bytes(png_bytes(1))
    (f["outbox"] / "trip").mkdir()
    (f["outbox"] / "trip" / "sea.png").write_bytes(png_bytes(2))
    run_once(config, FakeCloaker())
    assert files_under(f["ready"]) == ["sunflowers.png", "trip/sea.png"]
    assert (f["ready"] / "trip" / "sea.png").read_bytes() == MARK + png_bytes(2)
    assert (f["originals"] / "sunflowers.png").read_bytes() == png_bytes(1)
    assert files_under(f["originals"]) == ["sunflowers.png", "trip/sea.png"]
    assert files_under(f["outbox"]) == [] and files_under(f["failed"]) == []
    assert sorted(states(tmp_path)) == [("sunflowers.png", "done"), ("trip/sea.png", "done")]


def test_one_log_line_per_finished_file_with_time_and_psnr(tmp_path, caplog):
    config = write_config(tmp_path)
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    (outbox / "sunflowers.png").write_bytes(png_bytes(1))
    with caplog.at_level(logging.INFO, logger="sfumato"):
        run_once(config, FakeCloaker())
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done ")]
    assert done == [
        "done outbox/sunflowers.png -> ready/sunflowers.png in 0.0 s, PSNR 41.5 dB, target pixelart"
    ]


def test_bad_files_go_to_failed_with_a_reason_and_others_are_left(tmp_path, caplog):
    config = write_config(tmp_path, daemon="truncated_wait = 0.3")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "empty.png").write_bytes(b"")
    (f["outbox"] / "corrupt.png").write_bytes(png_bytes(1)[:40])
    (f["outbox"] / "webp.png").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(40))
    (f["outbox"] / "notes.txt").write_text("not art")
    (f["outbox"] / "good.png").write_bytes(png_bytes(2))
    with caplog.at_level(logging.INFO, logger="sfumato"):
        run_once(config, FakeCloaker())
        run_once(config, FakeCloaker())
    assert files_under(f["ready"]) == ["good.png"]
    assert files_under(f["outbox"]) == ["notes.txt"]
    assert files_under(f["failed"]) == [
        "corrupt.png",
        "corrupt.png.error.txt",
        "empty.png",
        "empty.png.error.txt",
        "webp.png",
        "webp.png.error.txt",
    ]
    assert (f["failed"] / "corrupt.png").read_bytes() == png_bytes(1)[:40]  # original intact
    reasons = {n: (f["failed"] / f"{n}.error.txt").read_text() for n in ("empty.png", "webp.png")}
    assert reasons["empty.png"] == "empty.png is empty (0 bytes).\n"
    assert (f["failed"] / "corrupt.png.error.txt").read_text() == (
        "corrupt.png: the image is truncated, and it did not change for 0.3 s.\n"
    )  # run --once gave it its bounded wait for the rest
    assert "WebP" in reasons["webp.png"] and reasons["webp.png"].count(".\n") == 1
    left = [r for r in caplog.records if "notes.txt" in r.getMessage()]
    assert len(left) == 1 and "not a JPG or PNG" in left[0].getMessage()  # logged once


def test_too_large_files_fail_with_the_limit_named(tmp_path):
    config = write_config(tmp_path, daemon="max_file_mb = 0.001")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "big.png").write_bytes(png_bytes(1, size=64))
    run_once(config, FakeCloaker())
    assert "daemon.max_file_mb" in (f["failed"] / "big.png.error.txt").read_text()


def test_same_content_twice_is_not_cloaked_again_but_changed_content_is(tmp_path):
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    cloaker = FakeCloaker()
    (f["outbox"] / "a.png").write_bytes(png_bytes(1))
    run_once(config, cloaker)
    (f["outbox"] / "a.png").write_bytes(png_bytes(1))  # dropped again, same content
    run_once(config, cloaker)
    assert len(cloaker.calls) == 1
    assert files_under(f["ready"]) == ["a.png"]
    assert files_under(f["originals"]) == ["a-1.png", "a.png"]  # kept, numbered, not lost
    (f["outbox"] / "a.png").write_bytes(png_bytes(2))  # an edited version
    run_once(config, cloaker)
    assert len(cloaker.calls) == 2
    assert files_under(f["ready"]) == ["a-1.png", "a.png"]
    assert (f["ready"] / "a-1.png").read_bytes() == MARK + png_bytes(2)
    assert [s for _, s in states(tmp_path)] == ["done", "duplicate", "done"]


def test_names_taken_in_ready_get_a_number_never_an_overwrite(tmp_path):
    config = write_config(tmp_path)
    f = art(tmp_path)
    for role in ("outbox", "ready", "originals"):
        f[role].mkdir(parents=True)
        (f[role] / "a.png").write_bytes(b"the user's own file")
    (f["outbox"] / "a.png").write_bytes(png_bytes(3))
    run_once(config, FakeCloaker())
    assert (f["ready"] / "a.png").read_bytes() == b"the user's own file"
    assert (f["ready"] / "a-1.png").read_bytes() == MARK + png_bytes(3)
    assert (f["originals"] / "a-1.png").read_bytes() == png_bytes(3)


def test_transient_errors_are_retried_then_failed_with_the_original_kept(tmp_path):
    config = write_config(tmp_path, daemon="retry_backoff = 0.05\nmax_attempts = 2")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "once.png").write_bytes(png_bytes(1))
    cloaker = FakeCloaker(transient_failures=1)
    run_once(config, cloaker, status=1)  # could not do all its work: a retry waits
    run_once(config, cloaker)  # the retry is due now
    assert files_under(f["ready"]) == ["once.png"]
    (f["outbox"] / "never.png").write_bytes(png_bytes(2))
    cloaker.transient_failures = 10
    for status in (1, 0, 0):
        run_once(config, cloaker, status=status)
        time.sleep(0.1)
    assert files_under(f["failed"]) == ["never.png", "never.png.error.txt"]
    reason = (f["failed"] / "never.png.error.txt").read_text()
    assert reason.startswith("gave up after 2 attempts") and "No space left" in reason
    assert (f["failed"] / "never.png").read_bytes() == png_bytes(2)


def test_auto_style_is_chosen_once_per_folder_and_kept(tmp_path):
    folders = folder_block(tmp_path, "a") + folder_block(tmp_path, "b", 'style = "ink"')
    config = write_config(tmp_path, daemon="workers = 2", folders=folders)
    for name in ("a", "b"):
        art(tmp_path, name)["outbox"].mkdir(parents=True)
    for i in range(3):
        (art(tmp_path, "a")["outbox"] / f"{i}.png").write_bytes(png_bytes(i))
    (art(tmp_path, "b")["outbox"] / "b.png").write_bytes(png_bytes(9))
    cloaker = FakeCloaker()
    run_once(config, cloaker)
    styles = sorted((src.parent.parent.name, opts.style) for src, opts in cloaker.calls)
    assert styles.count(("a", "auto")) == 1  # the first image picks the target...
    assert styles.count(("a", "pixelart")) == 2  # ...the others follow it
    assert ("b", "ink") in styles
    cloaker.target = "anime"  # a restart must not change the folder's target
    (art(tmp_path, "a")["outbox"] / "later.png").write_bytes(png_bytes(7))
    run_once(config, cloaker)
    assert cloaker.calls[-1][1].style == "pixelart"


def test_restart_after_output_written_moves_the_original_without_cloaking_again(tmp_path):
    """As if SIGKILLed after the cloak was renamed into ready, before the original moved."""
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    data = png_bytes(1)
    (f["outbox"] / "a.png").write_bytes(data)
    f["ready"].mkdir(parents=True)
    (f["ready"] / "a.png").write_bytes(MARK + data)
    ledger = Ledger(tmp_path / "state")
    job = ledger.add(str(f["outbox"]), "a.png", len(data), 0, file_sha256(f["outbox"] / "a.png"))
    ledger.update(job, state="working", output=str(f["ready"] / "a.png"))
    ledger.close()
    cloaker = FakeCloaker()
    run_once(config, cloaker)
    assert cloaker.calls == []
    assert files_under(f["ready"]) == ["a.png"] and files_under(f["originals"]) == ["a.png"]
    assert files_under(f["outbox"]) == []


def test_restart_mid_move_finishes_the_move_without_a_second_copy(tmp_path):
    """As if SIGKILLed after the original was copied to originals, before it left the outbox."""
    config = write_config(tmp_path)
    f = art(tmp_path)
    data = png_bytes(1)
    for role in ("outbox", "ready", "originals"):
        f[role].mkdir(parents=True)
    (f["outbox"] / "a.png").write_bytes(data)
    (f["originals"] / "a.png").write_bytes(data)
    (f["ready"] / "a.png").write_bytes(MARK + data)
    ledger = Ledger(tmp_path / "state")
    job = ledger.add(str(f["outbox"]), "a.png", len(data), 0, file_sha256(f["outbox"] / "a.png"))
    ledger.update(
        job,
        state="working",
        phase="move",
        output=str(f["ready"] / "a.png"),
        original_to=str(f["originals"] / "a.png"),
    )
    ledger.close()
    run_once(config, FakeCloaker())
    assert files_under(f["originals"]) == ["a.png"] and files_under(f["outbox"]) == []
    assert states(tmp_path) == [("a.png", "done")]


def _other_filesystem(tmp_path: Path) -> Path | None:
    for candidate in (Path("/dev/shm"), Path("/run/user") / str(os.getuid())):
        try:
            if candidate.is_dir() and candidate.stat().st_dev != tmp_path.stat().st_dev:
                return candidate
        except OSError:
            continue
    return None


def test_folders_on_another_filesystem_get_complete_copies(tmp_path):
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second filesystem to move files to")
    target = Path(tempfile.mkdtemp(dir=other))
    try:
        folders = (
            f'[[folders]]\noutbox = "{tmp_path / "outbox"}"\nready = "{target / "ready"}"\n'
            f'originals = "{target / "originals"}"\nfailed = "{target / "failed"}"\n'
        )
        config = write_config(tmp_path, folders=folders)
        (tmp_path / "outbox").mkdir()
        (tmp_path / "outbox" / "a.png").write_bytes(png_bytes(1))
        (tmp_path / "outbox" / "bad.png").write_bytes(b"")
        run_once(config, FakeCloaker())
        assert (target / "originals" / "a.png").read_bytes() == png_bytes(1)
        assert files_under(target / "ready") == ["a.png"]
        assert files_under(target / "failed") == ["bad.png", "bad.png.error.txt"]
        assert files_under(tmp_path / "outbox") == []
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_temp_files_of_a_killed_daemon_are_cleaned_up(tmp_path):
    config = write_config(tmp_path)
    f = art(tmp_path)
    for role in ("outbox", "ready"):
        f[role].mkdir(parents=True)
    (f["outbox"] / "a.png").write_bytes(png_bytes(1))
    (f["ready"] / ".a.png.x1y2.sfumato-tmp").write_bytes(b"half a cloak")
    ledger = Ledger(tmp_path / "state")
    sha = file_sha256(f["outbox"] / "a.png")
    job = ledger.add(str(f["outbox"]), "a.png", 1, 0, sha)
    ledger.update(job, state="working", output=str(f["ready"] / "a.png"))
    ledger.close()
    run_once(config, FakeCloaker())
    assert files_under(f["ready"]) == ["a.png"]


def test_watching_daemon_picks_up_new_files_and_slow_and_renamed_writes(tmp_path, running):
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "waiting.png").write_bytes(png_bytes(1))
    daemon = running(config, FakeCloaker())
    assert wait_for(lambda: (f["ready"] / "waiting.png").exists(), 5)  # waiting at start-up
    start = time.monotonic()
    (f["outbox"] / "new.png").write_bytes(png_bytes(2))
    assert wait_for(lambda: (f["ready"] / "new.png").exists(), 5)
    assert time.monotonic() - start < 2.0
    data = png_bytes(3)
    with open(f["outbox"] / "slow.png", "wb") as handle:  # a slow copy, pausing > settle
        for start in range(0, len(data), 2000):
            handle.write(data[start : start + 2000])
            handle.flush()
            time.sleep(0.4)
    (f["outbox"] / "edit.png.tmp").write_bytes(png_bytes(4))  # editor: temp file, then rename
    os.rename(f["outbox"] / "edit.png.tmp", f["outbox"] / "edit.png")
    assert wait_for(lambda: len(files_under(f["originals"])) == 4, 5)
    daemon.stop()
    assert (f["ready"] / "slow.png").read_bytes() == MARK + data
    assert (f["ready"] / "edit.png").read_bytes() == MARK + png_bytes(4)
    assert files_under(f["ready"]) == ["edit.png", "new.png", "slow.png", "waiting.png"]
    assert files_under(f["failed"]) == [] and files_under(f["outbox"]) == []


def test_two_hundred_files_at_once_are_each_processed_exactly_once(tmp_path, running):
    config = write_config(tmp_path, daemon="workers = 2")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    cloaker = FakeCloaker()
    daemon = running(config, cloaker)
    staging = tmp_path / "staging"
    staging.mkdir()
    for i in range(200):
        (staging / f"{i:03}.png").write_bytes(png_bytes(i, size=24))
    for path in sorted(staging.iterdir()):
        os.rename(path, f["outbox"] / path.name)  # as a file manager moves a selection
    assert wait_for(lambda: len(files_under(f["originals"])) == 200, 60)
    daemon.stop()
    names = [f"{i:03}.png" for i in range(200)]
    assert files_under(f["ready"]) == names and files_under(f["originals"]) == names
    assert len(cloaker.calls) == 200 and files_under(f["outbox"]) == []


def test_reload_picks_up_a_new_folder_and_keeps_the_old_config_if_invalid(tmp_path, running, caplog):
    config = write_config(tmp_path)
    daemon = running(config, FakeCloaker())
    with caplog.at_level(logging.ERROR, logger="sfumato"):
        text = config.read_text()
        config.write_text(text + "[defaults]\nintensity = 'extreme'\n")
        daemon.daemon.request_reload()
        assert wait_for(lambda: "kept the previous configuration" in caplog.text, 5)
    assert "defaults.intensity" in caplog.text
    config.write_text(text + folder_block(tmp_path, "second"))
    daemon.daemon.request_reload()
    second = art(tmp_path, "second")
    assert wait_for(lambda: second["outbox"].exists(), 5)
    (second["outbox"] / "x.png").write_bytes(png_bytes(1))
    assert wait_for(lambda: (second["ready"] / "x.png").exists(), 5)
    daemon.stop()


def test_status_reports_folders_totals_and_recent_files(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["status", "--config", str(config)]) == 0
    assert "has not run yet" in capsys.readouterr().out
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "good.png").write_bytes(png_bytes(1))
    (f["outbox"] / "bad.png").write_bytes(b"")
    run_once(config, FakeCloaker())
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "Daemon: not running" in text and str(f["outbox"]) in text
    assert "1 done, 1 failed" in text and "target pixelart" in text
    assert "good.png" in text and "PSNR 41.5 dB" in text and "bad.png is empty" in text
    assert main(["status", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    (folder,) = report["folders"]
    assert folder["totals"]["done"] == 1 and folder["totals"]["failed"] == 1
    assert report["last_done"][0]["output"] == str(f["ready"] / "good.png")
    assert report["last_failed"][0]["moved_to"] == str(f["failed"] / "bad.png")


def test_status_shows_the_current_job_while_the_daemon_runs(tmp_path, running, capsys):
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "long.png").write_bytes(png_bytes(1))
    daemon = running(config, FakeCloaker(delay=3.0))
    assert wait_for(lambda: ("long.png", "working") in states(tmp_path), 5)
    time.sleep(1.0)
    assert main(["status", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["running"] is True
    (current,) = report["current"]
    assert current["file"].endswith("long.png") and 0 < current["progress"] < 1
    daemon.stop()  # the stop interrupts the job: it waits for the next start
    assert states(tmp_path) == [("long.png", "waiting")]
    assert files_under(f["outbox"]) == ["long.png"] and files_under(f["ready"]) == []


def test_config_errors_stop_the_daemon_before_anything_is_processed(tmp_path, capsys):
    config = write_config(tmp_path, defaults='intensity = "extreme"\nqualty = "fast"')
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    (outbox / "a.png").write_bytes(png_bytes(1))
    assert main(["run", "--once", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "defaults.intensity" in err and "defaults.qualty: unknown key" in err
    assert files_under(outbox) == ["a.png"] and not (tmp_path / "state").exists()


def test_once_finishes_despite_jobs_of_a_folder_no_longer_configured(tmp_path):
    config = write_config(tmp_path)
    ledger = Ledger(tmp_path / "state")
    ledger.add(str(tmp_path / "removed-outbox"), "a.png", 1, 0, "aa")
    ledger.close()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (run_once(config, FakeCloaker()), done.set()))
    thread.start()
    thread.join(10)
    assert done.is_set()
    assert states(tmp_path) == [("a.png", "waiting")]  # kept for when the folder comes back


# ----- subprocess, no engine needed -------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_daemon_with_status_0_and_sighup_reloads(tmp_path, signum):
    config = write_config(tmp_path, folders="")  # no folders: no models to load
    process = start_daemon(config, tmp_path / "home")
    log = LogReader(process)
    try:
        assert log.wait_for("watching no folders", 30), log.text
        write_config(tmp_path, daemon="workers = 0", folders="")
        process.send_signal(signal.SIGHUP)
        assert log.wait_for("kept the previous configuration", 10), log.text
        assert "daemon.workers: input should be greater than or equal to 1" in log.text
        started = time.monotonic()
        process.send_signal(signum)
        assert process.wait(10) == 0, log.text
        assert time.monotonic() - started < 5
    finally:
        if process.poll() is None:
            process.kill()


# ----- subprocess, real engine ------------------------------------------------------------

engine = pytest.mark.slow


def engine_config(root: Path, steps: int = 2, daemon: str = "") -> Path:
    path = write_config(root, daemon=daemon)
    path.write_text(path.read_text() + TINY_ENGINE.format(steps=steps))
    return path


def assert_each_once(root: Path, originals: dict[str, bytes]) -> None:
    """Every dropped file cloaked once into ready and kept once, untouched, in originals."""
    f = art(root)
    names = sorted(originals)
    assert files_under(f["outbox"]) == []
    assert files_under(f["ready"]) == names  # no temp files, no numbered second copies
    assert files_under(f["originals"]) == names
    for name, data in originals.items():
        assert (f["originals"] / name).read_bytes() == data
        cloaked = (f["ready"] / name).read_bytes()
        assert cloaked.startswith(b"\x89PNG") and cloaked != data


@engine
def test_engine_run_once_cloaks_waiting_files(tmp_path):
    config = engine_config(tmp_path, daemon="truncated_wait = 0.5")
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    originals = {"a.png": png_bytes(1), "b.png": png_bytes(2)}
    for name, data in originals.items():
        (outbox / name).write_bytes(data)
    (outbox / "truncated.png").write_bytes(png_bytes(3)[:300])
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, format="PNG")
    (outbox / "dot.png").write_bytes(tiny.getvalue())  # once three tracebacks, then failed
    process = start_daemon(config, tmp_path / "home", "--once")
    log = LogReader(process)
    assert process.wait(180) == 0, log.text
    assert_each_once(tmp_path, originals)
    assert log.text.count("done outbox/") == 2 and "PSNR" in log.text
    targets = {line.split(", target ")[1].split(",")[0] for line in log.lines if "done outbox/" in line}
    assert len(targets) == 1  # style "auto": the folder's first image chose it for both
    failed = art(tmp_path)["failed"]
    assert files_under(failed) == [
        "dot.png",
        "dot.png.error.txt",
        "truncated.png",
        "truncated.png.error.txt",
    ]
    reason = (failed / "truncated.png.error.txt").read_text()
    assert reason.startswith("truncated.png: the image is truncated") and reason.count("\n") == 1
    assert (failed / "dot.png.error.txt").read_text() == (
        "dot.png: 1×1 pixels is too small to cloak (at least 32 pixels on the short side).\n"
    )
    assert "Traceback" not in log.text and "retrying" not in log.text


@engine
def test_engine_first_run_creates_config_and_folders_then_watches(tmp_path):
    home = tmp_path / "home"
    tiny = {
        "SFUMATO_DEFAULTS__ENCODERS": '["openclip:sfumato-tiny/random"]',
        "SFUMATO_DEFAULTS__QUALITY": "fast",
        "SFUMATO_DEFAULTS__STEPS": "2",
        "SFUMATO_DEFAULTS__DEVICE": "cpu",
        "SFUMATO_DEFAULTS__CHECK__ENABLED": "false",
        "SFUMATO_DAEMON__SETTLE_SECONDS": "0.2",
    }
    process = start_daemon(None, home, env=tiny)
    log = LogReader(process)
    try:
        assert log.wait_for("watching", 120), log.text
        config = home / ".config" / "sfumato" / "config.toml"
        pictures = home / "Pictures" / "sfumato"
        assert config.is_file() and str(config) in log.text
        assert sorted(p.name for p in pictures.iterdir()) == [
            "failed",
            "originals",
            "outbox",
            "ready",
        ]
        assert str(pictures / "outbox") in log.text
        (pictures / "outbox" / "first.png").write_bytes(png_bytes(1))
        assert wait_for(lambda: (pictures / "originals" / "first.png").exists(), 60), log.text
        assert (pictures / "ready" / "first.png").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, log.text


@engine
def test_engine_sigterm_stops_cleanly_and_the_job_resumes(tmp_path):
    config = engine_config(tmp_path, steps=400)
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    originals = {"long.png": png_bytes(1)}
    (outbox / "long.png").write_bytes(originals["long.png"])
    process = start_daemon(config, tmp_path / "home")
    log = LogReader(process)
    assert wait_for(lambda: ("long.png", "working") in states(tmp_path), 120), log.text
    time.sleep(1.0)
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0, log.text
    assert time.monotonic() - stopped_at < 8, "SIGTERM must stop the daemon within seconds"
    assert files_under(art(tmp_path)["ready"]) == [] and files_under(outbox) == ["long.png"]
    config.write_text(config.read_text().replace("steps = 400", "steps = 2"))
    process = start_daemon(config, tmp_path / "home", "--once")
    assert process.wait(180) == 0, LogReader(process).text
    assert_each_once(tmp_path, originals)


@engine
def test_engine_sigkill_during_jobs_then_restart_loses_and_repeats_nothing(tmp_path):
    config = engine_config(tmp_path, steps=30)
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    originals = {f"{i}.png": png_bytes(i) for i in range(4)}
    for name, data in originals.items():
        (outbox / name).write_bytes(data)
    process = start_daemon(config, tmp_path / "home")
    log = LogReader(process)
    # Kill it in the middle of its second job, after one file went all the way through.
    assert log.wait_for("done outbox/", 180), log.text
    assert wait_for(lambda: any(s == "working" for _, s in states(tmp_path)), 60), log.text
    time.sleep(0.3)
    process.kill()
    process.wait(10)
    config.write_text(config.read_text().replace("steps = 30", "steps = 2"))
    process = start_daemon(config, tmp_path / "home", "--once")
    assert process.wait(180) == 0, LogReader(process).text
    assert_each_once(tmp_path, originals)
    assert sorted(s for _, s in states(tmp_path)) == ["done"] * 4


# ----- subprocess, stand-in cloaker (tests/fakedaemon.py): kills and second instances -------


def sfumato_cli(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sfumato", *args]
    return subprocess.run(command, env=daemon_env(home), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("second_args", [["--once"], []])
def test_a_second_daemon_on_one_state_dir_names_the_first_and_exits_non_zero(tmp_path, second_args):
    """A service plus a manual ``sfumato run`` (or a cron ``run --once``) once both cloaked."""
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    home = tmp_path / "home"
    first = start_daemon(config, home, fake={"delay": 1.0})
    log = LogReader(first)
    try:
        assert log.wait_for("watching", 30), log.text
        (f["outbox"] / "a.png").write_bytes(png_bytes(1))
        assert wait_for(lambda: ("a.png", "working") in states(tmp_path), 10), log.text
        second = start_daemon(config, home, *second_args, fake={})
        try:
            out, _ = second.communicate(timeout=30)
        finally:
            if second.poll() is None:
                second.kill()
        assert second.returncode == 1, out
        assert out.splitlines() == [
            f"sfumato: another sfumato daemon (pid {first.pid}) is already running with the state "
            f"folder {tmp_path / 'state'}: stop it first, or give this one another daemon.state_dir"
        ]
        status = sfumato_cli("status", "--json", "--config", str(config), home=home)  # read-only
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["daemon"]["running"] is True and report["daemon"]["pid"] == first.pid
        assert wait_for(lambda: (f["originals"] / "a.png").exists(), 10), log.text
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0, log.text
    assert files_under(f["ready"]) == ["a.png"] and states(tmp_path) == [("a.png", "done")]
    again = start_daemon(config, home, "--once", fake={})  # the lock went with its holder
    assert again.wait(30) == 0, LogReader(again).text


def test_an_image_that_kills_the_daemon_is_tried_max_attempts_times_then_failed(tmp_path):
    """Attempts were counted only when a job ended: one file reached 6 of 3 in a crash loop."""
    config = write_config(tmp_path, daemon="max_attempts = 3")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "bomb.png").write_bytes(png_bytes(1))
    calls = tmp_path / "calls.txt"
    fake = {"crash": True, "calls_file": str(calls)}
    for _ in range(3):  # a real SIGKILL of the daemon in the middle of each try
        process = start_daemon(config, tmp_path / "home", "--once", fake=fake)
        assert process.wait(30) == -signal.SIGKILL
    process = start_daemon(config, tmp_path / "home", "--once", fake=fake)
    log = LogReader(process)
    assert process.wait(30) == 0, log.text
    assert calls.read_text().splitlines() == ["bomb.png"] * 3
    assert files_under(f["failed"]) == ["bomb.png", "bomb.png.error.txt"]
    assert (f["failed"] / "bomb.png").read_bytes() == png_bytes(1)
    reason = (f["failed"] / "bomb.png.error.txt").read_text()
    assert reason == (
        "gave up after 3 attempts: the daemon died while cloaking it (out of memory, a crash or a kill).\n"
    )


@pytest.mark.parametrize("moment", ["output", "temp"])
def test_sigkill_just_as_an_incomplete_output_lands_does_not_cloak_twice(tmp_path, moment):
    """The quick check renames a failing cloak ``INCOMPLETE-...`` after the ledger planned its
    name: killed the moment it landed (or while under its temp name), a restart cloaked again."""
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    hold = {"hold": 30.0} if moment == "output" else {"hold_temp": 30.0}
    process = start_daemon(
        config, tmp_path / "home", fake={"incomplete": True, "calls_file": str(calls), **hold}
    )
    log = LogReader(process)
    try:
        assert log.wait_for("watching", 30), log.text
        (f["outbox"] / "a.png").write_bytes(png_bytes(1))
        if moment == "output":
            landed = lambda: (f["ready"] / "INCOMPLETE-a.png").exists()  # noqa: E731
        else:
            landed = lambda: any(n.endswith(".sfumato-tmp") for n in files_under(f["ready"]))  # noqa: E731
        assert wait_for(landed, 15, step=0.01), log.text
    finally:
        process.kill()
        process.wait(10)
    process = start_daemon(
        config, tmp_path / "home", "--once", fake={"incomplete": True, "calls_file": str(calls)}
    )
    log = LogReader(process)
    assert process.wait(30) == 0, log.text
    assert files_under(f["ready"]) == ["INCOMPLETE-a.png"], log.text  # no second copy, no temp
    assert files_under(f["originals"]) == ["a.png"] and files_under(f["outbox"]) == []
    assert len(calls.read_text().splitlines()) == (1 if moment == "output" else 2)
    (row,) = open_read_only(tmp_path / "state").execute("SELECT state, output FROM files").fetchall()
    assert tuple(row) == ("done", str(f["ready"] / "INCOMPLETE-a.png"))


# ----- files written in pieces ---------------------------------------------------------------


def test_a_file_written_in_appended_chunks_is_cloaked_whole_not_split(tmp_path, running):
    """A writer that opens, appends and closes four times with pauses longer than settle_seconds
    (sync clients, ``cat >>``) had each piece failed as a file of its own."""
    config = write_config(tmp_path, daemon="truncated_wait = 10")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    cloaker = FakeCloaker()
    daemon = running(config, cloaker)
    data = png_bytes(1, size=64)
    cut = [len(data) * i // 4 for i in range(5)]
    for start, end in zip(cut, cut[1:], strict=False):
        with open(f["outbox"] / "a.png", "ab") as handle:
            handle.write(data[start:end])
        time.sleep(1.0)  # five times settle_seconds: each piece is taken for a whole file
    assert wait_for(lambda: (f["originals"] / "a.png").exists(), 10), files_under(tmp_path)
    daemon.stop()
    assert files_under(f["failed"]) == [] and files_under(f["outbox"]) == []
    assert files_under(f["ready"]) == ["a.png"] and files_under(f["originals"]) == ["a.png"]
    assert (f["ready"] / "a.png").read_bytes() == MARK + data
    assert (f["originals"] / "a.png").read_bytes() == data
    assert states(tmp_path) == [("a.png", "done")]


def test_a_file_that_stays_truncated_is_failed_whole_after_truncated_wait(tmp_path, running, caplog):
    config = write_config(tmp_path, daemon="truncated_wait = 1.5")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    daemon = running(config, FakeCloaker())
    half = png_bytes(2, size=64)[:500]
    with caplog.at_level(logging.INFO, logger="sfumato"):
        (f["outbox"] / "cut.png").write_bytes(half)
        assert wait_for(lambda: "cut.png is truncated, most likely still being written" in caplog.text, 5)
        time.sleep(0.5)
        assert files_under(f["outbox"]) == ["cut.png"]  # waiting for the rest of it
        assert wait_for(lambda: (f["failed"] / "cut.png.error.txt").exists(), 10)
        daemon.stop()
    assert files_under(f["failed"]) == ["cut.png", "cut.png.error.txt"]
    assert (f["failed"] / "cut.png").read_bytes() == half  # whole, untouched
    reason = (f["failed"] / "cut.png.error.txt").read_text()
    assert reason == "cut.png: the image is truncated, and it did not change for 1.5 s.\n"


def test_the_rest_of_a_failed_truncated_file_is_named_as_such_not_as_a_new_file(tmp_path):
    """Appended after its wait ran out, the rest of a file arrives under the same name without
    an image header; it is said to be that file's rest, with where the first part went."""
    config = write_config(tmp_path, daemon="truncated_wait = 0")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    data = png_bytes(3, size=64)
    (f["outbox"] / "a.png").write_bytes(data[:300])
    run_once(config, FakeCloaker())
    (f["outbox"] / "a.png").write_bytes(data[300:])
    run_once(config, FakeCloaker())
    assert files_under(f["failed"]) == ["a-1.png", "a-1.png.error.txt", "a.png", "a.png.error.txt"]
    assert (f["failed"] / "a.png").read_bytes() + (f["failed"] / "a-1.png").read_bytes() == data
    reason = (f["failed"] / "a-1.png.error.txt").read_text()
    assert reason == (
        "a.png does not start like an image, and a truncated file of that name was failed before "
        "it: it looks like the rest of that file (now failed/a.png), which it completes when the "
        "two are joined.\n"
    )


def test_an_outbox_deleted_and_made_again_while_running_is_watched_again(tmp_path, running, capsys):
    """New files in the new folder were silently ignored, and status said nothing waited."""
    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    daemon = running(config, FakeCloaker(delay=2.0))  # long enough for status to see one wait
    (f["outbox"] / "before.png").write_bytes(png_bytes(1))
    assert wait_for(lambda: (f["originals"] / "before.png").exists(), 10)
    shutil.rmtree(f["outbox"])
    f["outbox"].mkdir()  # at once: the filesystem may give it the old folder's inode number
    for i in range(2):
        (f["outbox"] / f"new{i}.png").write_bytes(png_bytes(10 + i))
    assert wait_for(lambda: sum(s == "waiting" for _, s in states(tmp_path)) >= 1, 10)
    assert main(["status", "--config", str(config)]) == 0
    assert "Waiting: 0" not in capsys.readouterr().out
    assert wait_for(lambda: len(files_under(f["originals"])) == 3, 20), files_under(tmp_path)
    daemon.stop()
    assert files_under(f["ready"]) == ["before.png", "new0.png", "new1.png"]
    assert files_under(f["outbox"]) == []


# ----- folders that cannot take results --------------------------------------------------------


@pytest.mark.parametrize("how", ["a file in the way", "read-only"])
def test_a_ready_folder_that_cannot_be_written_pauses_its_folder_until_fixed(tmp_path, running, caplog, how):
    """Each queued file was cloaked three times, then failed with a permission error, and
    nothing retried once the folder was fixed. A folder problem is not the picture's fault."""
    if how == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    config = write_config(tmp_path, daemon="retry_backoff = 0.05")
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    if how == "read-only":
        f["ready"].mkdir()
        f["ready"].chmod(0o555)
    else:
        f["ready"].write_text("not a folder")
    cloaker = FakeCloaker()
    with caplog.at_level(logging.INFO, logger="sfumato"):
        daemon = running(config, cloaker)
        for i in range(2):
            (f["outbox"] / f"{i}.png").write_bytes(png_bytes(i))
        assert wait_for(lambda: "paused" in caplog.text, 5)
        time.sleep(2.5)  # retries would have come by now
        assert files_under(f["outbox"]) == ["0.png", "1.png"] and cloaker.calls == []
        assert files_under(f["failed"]) == []
        paused = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
        assert len(paused) == 1 and f"the ready folder {f['ready']}" in paused[0]  # said once
        status = sfumato_cli("status", "--config", str(config), home=tmp_path / "home")
        assert "    paused: the ready folder" in status.stdout, status.stderr
        if how == "read-only":
            f["ready"].chmod(0o755)
        else:
            f["ready"].unlink()
        assert wait_for(lambda: len(files_under(f["originals"])) == 2, 8), caplog.text
        daemon.stop()
    assert f"resumed {f['outbox']}" in caplog.text
    assert files_under(f["ready"]) == ["0.png", "1.png"] and files_under(f["failed"]) == []
    assert len(cloaker.calls) == 2 and [s for _, s in states(tmp_path)] == ["done", "done"]


def test_a_folder_that_cannot_be_created_fails_validate_and_run_once(tmp_path):
    """``ready = "/proc/ready"``: validate said ok, ``run --once`` exited 0 with the file left."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no folder can be made")
    folders = folder_block(tmp_path).replace(f'"{tmp_path / "art" / "ready"}"', '"/proc/sfumato-ready"')
    config = write_config(tmp_path, folders=folders)
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    (outbox / "a.png").write_bytes(png_bytes(1))
    home = tmp_path / "home"
    validate = sfumato_cli("config", "validate", "--config", str(config), home=home)
    assert validate.returncode == 2 and validate.stdout == ""
    assert validate.stderr.splitlines() == [
        f"sfumato: {config}: folders[0].ready: the ready folder /proc/sfumato-ready cannot be created "
        "(No such file or directory)"
    ]
    process = start_daemon(config, home, "--once", fake={})
    log = LogReader(process)
    assert process.wait(30) == 1, log.text
    assert "could not process 1 file(s) of" in log.text and "/proc/sfumato-ready" in log.text
    assert "Traceback" not in log.text and "retrying" not in log.text
    assert files_under(outbox) == ["a.png"] and states(tmp_path) == [("a.png", "waiting")]


# ----- one record, one line ---------------------------------------------------------------------


def test_status_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    """``sfumato status | head`` ended in a BrokenPipeError traceback."""
    config = write_config(tmp_path)
    run_once(config, FakeCloaker())
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before status writes a byte
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sfumato", "status", "--config", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=daemon_env(tmp_path / "home"),
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141


def test_a_file_name_with_a_line_break_cannot_forge_a_log_line(tmp_path):
    config = write_config(tmp_path)
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    (outbox / "evil\n2030-01-01 00:00:00 INFO done forged.png").write_bytes(png_bytes(1))
    process = start_daemon(config, tmp_path / "home", "--once", fake={})
    log = LogReader(process)
    assert process.wait(30) == 0, log.text
    assert not any(line.startswith("2030-01-01") for line in log.lines), log.text
    done = [line for line in log.lines if " INFO done " in line]
    assert len(done) == 1 and done[0].endswith(
        ' INFO done "outbox/evil\\n2030-01-01 00:00:00 INFO done forged.png" -> '
        '"ready/evil\\n2030-01-01 00:00:00 INFO done forged.png" in 0.0 s, PSNR 41.5 dB, '
        "target pixelart"
    ), log.text


@engine
def test_engine_done_line_and_status_name_the_ensemble_members_used_and_left_out(tmp_path):
    """A member that cannot be loaded (ViT-B-32 offline) was only named in a start-up warning."""
    config = write_config(tmp_path)
    vit = "openclip:ViT-B-32/laion2b_s34b_b79k"
    config.write_text(
        config.read_text()
        + TINY_ENGINE.format(steps=2)
        .replace(
            'encoders = ["openclip:sfumato-tiny/random"]',
            f'encoders = ["openclip:sfumato-tiny/random", "{vit}"]',
        )
        .replace("skip_unavailable_encoders = false", "skip_unavailable_encoders = true")
    )
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    (outbox / "a.png").write_bytes(png_bytes(1))
    offline = {"HF_HUB_OFFLINE": "1"}  # the weights are not cached and must not be fetched
    process = start_daemon(config, tmp_path / "home", "--once", env=offline)
    log = LogReader(process)
    assert process.wait(180) == 0, log.text
    (done,) = [line for line in log.lines if " done outbox/a.png" in line]
    assert done.endswith(f", encoders openclip:sfumato-tiny/random (left out: {vit})"), log.text
    status = sfumato_cli("status", "--json", "--config", str(config), home=tmp_path / "home")
    (last,) = json.loads(status.stdout)["last_done"]
    assert last["encoders"] == ["openclip:sfumato-tiny/random"] and last["left_out"] == [vit]
    text = sfumato_cli("status", "--config", str(config), home=tmp_path / "home").stdout
    assert f"encoders openclip:sfumato-tiny/random (left out: {vit})" in text


def test_a_file_is_sniffed_once_and_hashed_once_on_its_way(tmp_path, monkeypatch):
    """Intake reads a file once (kind, size, SHA-256) and the job and the final move trust it."""
    import hashlib

    import sfumato.images.sniffing as sniffing

    config = write_config(tmp_path)
    f = art(tmp_path)
    f["outbox"].mkdir(parents=True)
    (f["outbox"] / "a.png").write_bytes(png_bytes(1))
    (f["outbox"] / "scan").write_bytes(png_bytes(2))  # no extension: only its bytes say PNG
    calls = {"sha256": 0, "sniff": 0}
    real_sha256, real_sniff = hashlib.sha256, sniffing.sniff_bytes

    def counting_sha256(*args):
        calls["sha256"] += 1
        return real_sha256(*args)

    def counting_sniff(head: bytes):
        frame = sys._getframe(1)
        while frame is not None and not frame.f_code.co_filename.endswith("daemonkit.py"):
            frame = frame.f_back
        calls["sniff"] += frame is None  # the stand-in cloaker's own read is the engine's
        return real_sniff(head)

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    monkeypatch.setattr(sniffing, "sniff_bytes", counting_sniff)
    run_once(config, FakeCloaker())
    assert files_under(f["ready"]) == ["a.png", "scan"]
    assert files_under(f["originals"]) == ["a.png", "scan"]
    assert calls == {"sha256": 2, "sniff": 2}
