"""The job ledger: what survives a restart, and what ``sfumato status`` can read meanwhile."""

from __future__ import annotations

import sqlite3
import time

from sfumato.fileops import file_sha256
from sfumato.ledger import LEDGER_NAME, JobPhase, JobState, Ledger, LedgerReader, StateCount, open_read_only


def test_jobs_survive_reopening_and_interrupted_ones_are_resumed(tmp_path):
    ledger = Ledger(tmp_path)
    first = ledger.add("/out", "a.png", 10, 1.0, "aa")
    second = ledger.add("/out", "b.png", 10, 1.0, "bb")
    ledger.update(first, state="working", output="/ready/a.png", phase="move")
    ledger.close()

    ledger = Ledger(tmp_path)  # as after SIGKILL
    assert ledger.recover() == 1
    job = ledger.get(first)
    assert (job.state, job.output, job.phase) == ("waiting", "/ready/a.png", "move")
    assert [j.id for j in ledger.due(time.time())] == [first, second]


def test_active_and_done_lookups(tmp_path):
    ledger = Ledger(tmp_path)
    job = ledger.add("/out", "a.png", 10, 1.0, "aa")
    assert ledger.find_active("/out", "a.png").id == job
    assert ledger.find_done_content("/out", "aa") is None
    ledger.update(job, state="done")
    assert ledger.find_active("/out", "a.png") is None
    assert ledger.find_done_content("/out", "aa").id == job
    assert ledger.find_done_content("/other", "aa") is None  # per folder: other settings


def test_retry_waits_until_its_time(tmp_path):
    ledger = Ledger(tmp_path)
    job = ledger.add("/out", "a.png", 10, 1.0, "aa")
    later = time.time() + 60
    ledger.update(job, next_try_at=later)
    assert ledger.due(time.time()) == []
    assert ledger.next_retry_at() == later
    assert [j.id for j in ledger.due(later + 1)] == [job]


def test_first_target_chosen_for_a_folder_is_kept(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.folder_target("/out") is None
    assert ledger.set_folder_target("/out", "pixelart") == "pixelart"
    assert ledger.set_folder_target("/out", "anime") == "pixelart"
    ledger.close()
    assert Ledger(tmp_path).folder_target("/out") == "pixelart"


def test_status_reads_while_the_daemon_writes(tmp_path):
    assert open_read_only(tmp_path) is None  # never ran
    ledger = Ledger(tmp_path)
    job = ledger.add("/out", "a.png", 10, 1.0, "aa")
    reader = open_read_only(tmp_path)
    with ledger._tx() as db:  # a write transaction held open by the daemon
        db.execute("UPDATE files SET progress = 0.5 WHERE id = ?", (job,))
        rows = reader.execute("SELECT state, progress FROM files").fetchall()
        assert [tuple(r) for r in rows] == [("waiting", 0.0)]
    assert reader.execute("SELECT progress FROM files").fetchone()[0] == 0.5


def test_file_hash_depends_on_content_only(tmp_path):
    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"same")
    (tmp_path / "c").write_bytes(b"different")
    assert file_sha256(tmp_path / "a") == file_sha256(tmp_path / "b")
    assert file_sha256(tmp_path / "a") != file_sha256(tmp_path / "c")


def test_reader_gives_typed_rows_and_reads_a_ledger_of_an_older_daemon(tmp_path):
    """``sfumato status`` reads through LedgerReader, even a ledger written before the columns
    added since (it cannot add them read-only): those read as None."""
    ledger = Ledger(tmp_path)
    job = ledger.add("/out", "a.png", 10, 1.0, "aa")
    ledger.update(job, state="done", finished_at=5.0, output="/ready/a.png")
    ledger.add("/out", "b.png", 10, 1.0, "bb", state=JobState.IGNORED)
    ledger.set_folder_target("/out", "halftone")
    ledger.close()
    db = sqlite3.connect(tmp_path / LEDGER_NAME)  # as the first release wrote it
    db.execute("ALTER TABLE files RENAME TO newer")
    first_release = [c[1] for c in db.execute("PRAGMA table_info(newer)")][:-2]
    assert first_release[-1] == "phase"
    db.execute(f"CREATE TABLE files AS SELECT {', '.join(first_release)} FROM newer")
    db.execute("DROP TABLE newer")
    db.commit()
    db.close()

    reader = LedgerReader.open(tmp_path)
    try:
        assert sorted(reader.state_counts(), key=lambda c: c.state) == [
            StateCount("/out", JobState.DONE, 1),
            StateCount("/out", JobState.IGNORED, 1),
        ]
        (done,) = reader.latest(JobState.DONE, 5)
        assert (done.relpath, done.state, done.output) == ("a.png", "done", "/ready/a.png")
        assert done.encoders is None
        assert done.phase is JobPhase.CLOAK and reader.working() == []
        assert reader.folder_targets() == {"/out": "halftone"}
    finally:
        reader.close()
    assert LedgerReader.open(tmp_path / "never-ran") is None
