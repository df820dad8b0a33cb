"""Picking up files: only complete ones, only the user's artwork, from real watchdog observers."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest

from daemonkit import png_bytes, wait_for
from sfumato.config import FolderSettings
from sfumato.paths import FolderPaths
from sfumato.routing import feed
from sfumato.stability import StabilityTracker
from sfumato.watcher import Watcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def folder(root: Path, inside: bool = False) -> FolderPaths:
    outbox = root / "outbox"
    base = outbox if inside else root
    settings = FolderSettings(
        outbox=outbox, ready=base / "ready", originals=base / "originals", failed=base / "failed"
    )
    for role in ("outbox", "ready", "originals", "failed"):
        getattr(settings, role).mkdir(parents=True, exist_ok=True)
    return FolderPaths(settings)


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.png",
        "a.png.part",
        "a.png.crdownload",
        "a.png~",
        "a.png.tmp",
        ".a.png.swp",
        "~$a.png",
        ".sub/a.png",
        "a.png.download",
    ],
)
def test_temp_and_hidden_names_are_not_artwork(tmp_path, name):
    assert folder(tmp_path).relative(tmp_path / "outbox" / name) is None


def test_result_folders_inside_the_outbox_are_skipped(tmp_path):
    paths = folder(tmp_path, inside=True)
    outbox = tmp_path / "outbox"
    for role in ("ready", "originals", "failed"):
        (outbox / role / "x.png").write_bytes(b"x")
    (outbox / "trip").mkdir()
    (outbox / "trip" / "a.png").write_bytes(b"a")
    (outbox / "b.jpg").write_bytes(b"b")
    assert paths.relative(outbox / "ready" / "x.png") is None
    assert sorted(paths.relative(p) for p in paths.walk()) == ["b.jpg", "trip/a.png"]
    assert paths.ready_path("trip/a.png") == outbox / "ready" / "trip" / "a.png"


def test_a_file_is_ready_only_after_its_size_settles(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(1.0, clock=clock)
    path = tmp_path / "a.png"
    path.write_bytes(b"12")
    tracker.touch(path)
    assert tracker.ready() == []  # first look
    clock.now += 0.6
    with open(path, "ab") as handle:
        handle.write(b"34")  # a slow copy goes on
    assert tracker.ready() == []
    clock.now += 0.6
    assert tracker.ready() == []  # only 0.6 s since the last change
    clock.now += 0.5
    assert tracker.ready() == [path]
    assert len(tracker) == 0


def test_a_file_held_open_by_its_writer_is_not_taken(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(0.5, tracks_writers=True, clock=clock)
    path = tmp_path / "a.png"
    path.write_bytes(b"12")
    tracker.touch(path)
    tracker.opened(path)
    tracker.ready()
    clock.now += 10  # the writer pauses for long, but has not closed the file
    assert tracker.ready() == []
    tracker.closed(path, wrote=True)
    clock.now += 0.6
    assert tracker.ready() == [path]


def test_an_empty_placeholder_next_to_a_download_waits_for_the_download(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(0.5, clock=clock)
    path = tmp_path / "a.png"
    path.write_bytes(b"")
    (tmp_path / "a.png.part").write_bytes(b"partial")
    tracker.touch(path)
    tracker.ready()
    clock.now += 30
    assert tracker.ready() == []  # Firefox is still downloading into a.png.part
    os.replace(tmp_path / "a.png.part", path)  # ...and finally renames it over the placeholder
    assert tracker.ready() == []
    clock.now += 0.6
    assert tracker.ready() == [path]


def test_an_empty_file_gets_longer_than_settle_seconds(tmp_path):
    clock = Clock()
    tracker = StabilityTracker(0.5, clock=clock)
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    tracker.touch(path)
    tracker.ready()
    clock.now += 1
    assert tracker.ready() == []
    clock.now += 2
    assert tracker.ready() == [path]


def test_vanished_files_are_dropped(tmp_path):
    tracker = StabilityTracker(0.0)
    tracker.touch(tmp_path / "gone.png")
    assert tracker.ready() == [] and len(tracker) == 0


def _pickups(watcher: Watcher, tracker: StabilityTracker, paths: FolderPaths, seconds: float):
    """A miniature daemon loop: feed events to the tracker, collect the files it calls ready."""
    found: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            event = watcher.sink.get(timeout=0.05)
        except queue.Empty:
            pass
        else:
            if paths.relative(event.path) is not None:
                feed(tracker, event)
        found += [paths.relative(p) for p in tracker.ready()]
    return found


@pytest.fixture
def watched(tmp_path):
    paths = folder(tmp_path, inside=True)
    watcher = Watcher(queue.Queue())
    watcher.start([paths.outbox])
    yield watcher, paths
    watcher.stop()


def test_slow_writer_is_picked_up_once_complete(watched):
    watcher, paths = watched
    tracker = StabilityTracker(0.2, tracks_writers=watcher.reports_closes)
    data = png_bytes(1)
    path = paths.outbox / "slow.png"
    with open(path, "wb") as handle:
        for start in range(0, len(data), len(data) // 4 + 1):
            handle.write(data[start : start + len(data) // 4 + 1])
            handle.flush()
            assert _pickups(watcher, tracker, paths, 0.5) == []  # pauses longer than settle
    assert _pickups(watcher, tracker, paths, 1.5) == ["slow.png"]
    assert path.read_bytes() == data


def test_renamed_downloads_and_editor_saves_are_picked_up_under_their_final_name(watched):
    watcher, paths = watched
    tracker = StabilityTracker(0.2, tracks_writers=watcher.reports_closes)
    (paths.outbox / "a.png.crdownload").write_bytes(png_bytes(2))
    (paths.outbox / ".b.png.swp").write_bytes(png_bytes(3))
    (paths.outbox / "ready" / "mine.png").write_bytes(png_bytes(4))
    assert _pickups(watcher, tracker, paths, 0.8) == []
    os.rename(paths.outbox / "a.png.crdownload", paths.outbox / "a.png")
    os.rename(paths.outbox / ".b.png.swp", paths.outbox / "b.png")
    assert sorted(_pickups(watcher, tracker, paths, 1.5)) == ["a.png", "b.png"]


def test_a_completed_file_is_picked_up_within_two_seconds(watched):
    watcher, paths = watched
    tracker = StabilityTracker(1.0, tracks_writers=watcher.reports_closes)
    start = time.monotonic()
    (paths.outbox / "quick.png").write_bytes(png_bytes(5))
    found: list[str] = []
    assert wait_for(lambda: found.extend(_pickups(watcher, tracker, paths, 0.1)) or found, 3)
    assert found == ["quick.png"] and time.monotonic() - start < 2.0


def test_polling_fallback_sees_new_files(tmp_path):
    paths = folder(tmp_path)
    watcher = Watcher(queue.Queue(), polling=True, poll_interval=0.2)
    watcher.start([paths.outbox])
    try:
        assert not watcher.reports_closes
        tracker = StabilityTracker(0.2)
        (paths.outbox / "sub").mkdir()
        (paths.outbox / "sub" / "net.png").write_bytes(png_bytes(6))
        assert _pickups(watcher, tracker, paths, 2.0) == ["sub/net.png"]
    finally:
        watcher.stop()
