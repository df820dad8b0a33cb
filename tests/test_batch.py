"""`sfumato batch` on real Ray: a local Ray started in-process, and a cluster started with
`ray start --head` and joined by address. No mocks.

Ray's start-up (a head, two workers importing torch) is most of the time here, so the Ray runs
are shared by the module: run A cloaks a catalogue on a local Ray and is interrupted (SIGINT)
after three files; run B resumes it on a started cluster while a helper `ray.kill`s one of its
workers mid-run. The tests then check each promise on those two runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from enginekit import TINY_CLIP, artwork
from sfumato.batch.manifest import Manifest
from sfumato.batch.plan import MANIFEST_NAME, output_names, plan_batch
from sfumato.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLOAK = ["--encoder", TINY_CLIP, "--quality", "fast", "--steps", "3", "--no-check", "--style", "pixelart"]
GOOD = 12
CORRUPT = "zz-corrupt.png"  # sorts last: run A is interrupted before it, run B meets it
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra")


# --- without Ray: the plan and the manifest ---------------------------------------------------


def test_plan_mirrors_the_tree_skips_hidden_temp_and_dst_and_flags_a_name_clash(tmp_path):
    src = tmp_path / "src"
    (src / "trip" / ".hidden").mkdir(parents=True)
    for rel in ["b.png", "a.JPG", "trip/c.png", "trip/INCOMPLETE-c.png", "notes.txt", "d.png.part"]:
        (src / rel).write_bytes(b"x")
    (src / "trip" / ".hidden" / "e.png").write_bytes(b"x")
    (src / "out").mkdir()
    (src / "out" / "old.png").write_bytes(b"x")
    items = plan_batch(src, src / "out")
    assert [i.rel for i in items] == ["a.JPG", "b.png", "trip/INCOMPLETE-c.png", "trip/c.png"]
    clash = items[2]
    assert clash.problem.startswith("trip/INCOMPLETE-c.png: ") and "trip/c.png" in clash.problem
    assert output_names("trip/c.png") == ("trip/c.png", "trip/INCOMPLETE-c.png")


def test_manifest_cuts_a_torn_last_row_and_a_done_row_needs_its_output(tmp_path):
    row = {"path": "a.png", "sha256": "1", "status": "ok", "output_path": "a.png", "settings": {}}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(row) + "\n" + '{"path": "b.png", "sta')
    with Manifest.open(tmp_path, MANIFEST_NAME) as manifest:
        assert set(manifest.rows) == {"a.png"}
        assert manifest.done("a.png", "1", {}, tmp_path) is None  # its output is missing
        (tmp_path / "a.png").write_bytes(b"cloaked")
        assert manifest.done("a.png", "1", {}, tmp_path) == row
        assert manifest.done("a.png", "2", {}, tmp_path) is None  # the input changed
        assert manifest.done("a.png", "1", {"style": "sketch"}, tmp_path) is None
        manifest.append({**row, "path": "c.png"})
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["a.png", "c.png"]


@needs_ray
def test_a_folder_of_other_files_is_not_written_into_without_force(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    artwork(32).save(src / "a.png")
    (dst / "mine.txt").write_text("keep")
    assert main(["batch", str(src), str(dst)]) == 2
    assert "--force" in capsys.readouterr().err
    assert not (dst / MANIFEST_NAME).exists()


def test_without_ray_batch_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    (tmp_path / "src").mkdir()
    assert main(["batch", str(tmp_path / "src"), str(tmp_path / "dst")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'sfumato[ray]'" in err


# --- on Ray ------------------------------------------------------------------------------------

# Ray resolves 127.0.0.1 to this machine's own address, so the traffic stays on this machine.
_KILL_ONE_WORKER = """
import json, sys, time
from pathlib import Path
import ray
address, manifest, before = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
ray.init(address=address, namespace="sfumato", log_to_driver=False)
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    rows = manifest.read_text().count("\\n") if manifest.exists() else 0
    if rows > before:  # run B is under way: its first file is done, the rest are queued
        names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                       if a["name"].startswith("sfumato-batch-"))
        ray.kill(ray.get_actor(names[0], namespace="sfumato"))
        print(json.dumps({"killed": names[0], "rows": rows}), flush=True)
        break
    time.sleep(0.05)
"""


_WITH_CTRL_C = """
import runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = ["sfumato", *sys.argv[1:]]
runpy.run_module("sfumato", run_name="__main__")
"""


@dataclass
class Runs:
    src: Path
    dst: Path
    inputs: dict[str, str]  # rel -> sha256, before any run
    a_rows: list[dict]
    a_code: int
    a_outputs: dict[str, tuple[int, int]]  # output rel -> (inode, mtime_ns) after run A
    b_code: int
    b_lines: list[dict]
    b_err: str
    killed: dict
    rows: list[dict]
    planted: dict[str, str]  # rel -> an output left without a row before run B


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(dst: Path) -> list[dict]:
    path = dst / MANIFEST_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _catalogue(src: Path) -> None:
    for i in range(GOOD):
        folder = src / ("" if i < 4 else "series-1" if i < 8 else "series-2/late")
        folder.mkdir(parents=True, exist_ok=True)
        image = artwork(96 + 4 * i)
        image.save(folder / f"work-{i:02d}.{'jpg' if i % 3 == 0 else 'png'}")
    (src / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing


@pytest.fixture(scope="module")
def runs():
    work = Path(tempfile.mkdtemp(prefix="sfb-", dir="/tmp"))  # Ray's socket paths must stay short
    src, dst = work / "src", work / "dst"
    _catalogue(src)
    inputs = {p.relative_to(src).as_posix(): _sha(p) for p in src.rglob("*") if p.is_file()}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "daemon"), str(ROOT / "tests")]),
        # A token of this test's own, for the head, the drivers and the helper alike.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    port = _free_port()
    address = f"127.0.0.1:{port}"
    ray_cli = Path(sys.executable).with_name("ray")
    head_cmd = [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2"]
    head_cmd += ["--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"]
    head_cmd += [f"--temp-dir={work / 'ray'}"]
    # The head starts while run A uses a local Ray of its own.
    head = subprocess.Popen(
        head_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    sfumato = [sys.executable, "-m", "sfumato", "batch"]
    # The same command, with Ctrl-C honoured even when pytest itself runs in the background
    # (a shell's `&` leaves SIGINT ignored, and an ignored signal stays ignored in children).
    interruptible = [sys.executable, "-c", _WITH_CTRL_C, "batch"]
    try:
        # Run A: a local Ray in-process, interrupted (Ctrl-C) once three files are done.
        a = subprocess.Popen(
            [*interruptible, str(src), str(dst), "--workers", "2", "--json", *CLOAK],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while len(_rows(dst)) < 3 and a.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        a.send_signal(signal.SIGINT)
        a_err = a.communicate(timeout=120)[1]
        a_rows = _rows(dst)
        assert a_rows, a_err
        a_outputs = {}
        for p in dst.rglob("*"):
            if p.is_file() and p.name != MANIFEST_NAME:
                a_outputs[p.relative_to(dst).as_posix()] = (p.stat().st_ino, p.stat().st_mtime_ns)

        # As if A had crashed between an output's rename and its row: outputs without rows, one
        # under the other name (INCOMPLETE-) its file may get. B must overwrite or remove them.
        order = [i.rel for i in plan_batch(src, dst) if i.rel != CORRUPT]
        untouched = [rel for rel in order if rel not in a_outputs][-2:]
        assert len(untouched) == 2, f"run A was not interrupted in time: {a_rows}"
        planted = {untouched[-1]: untouched[-1], untouched[0]: output_names(untouched[0])[1]}
        for stale in planted.values():
            (dst / stale).write_bytes(b"left by a crash")

        # Run B: the same command resumed on the started cluster, by its address; a helper
        # kills one of its workers with ray.kill as soon as B has finished a file.
        helper = subprocess.Popen(
            [sys.executable, "-c", _KILL_ONE_WORKER, address, str(dst / MANIFEST_NAME), str(len(a_rows))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        b = subprocess.run(
            [*sfumato, str(src), str(dst), "--ray", address, "--json", *CLOAK],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        killed_out, killed_err = helper.communicate(timeout=60)
        killed = json.loads(killed_out) if killed_out.strip() else {"error": killed_err[-2000:]}
        yield Runs(
            src=src,
            dst=dst,
            inputs=inputs,
            a_rows=a_rows,
            a_code=a.returncode,
            a_outputs=a_outputs,
            b_code=b.returncode,
            b_lines=[json.loads(line) for line in b.stdout.splitlines() if line.strip()],
            b_err=b.stderr,
            killed=killed,
            rows=_rows(dst),
            planted=planted,
        )
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(work, ignore_errors=True)


@needs_ray
def test_an_interrupted_local_run_keeps_only_complete_outputs_with_their_rows(runs):
    assert runs.a_code == 130  # Ctrl-C
    assert len(runs.a_rows) < GOOD + 1
    for row in runs.a_rows:
        assert row["status"] == "ok" and (runs.dst / row["output_path"]).is_file()
    # An output may lack its row (interrupted between rename and append), never the reverse,
    # and no temp file is left under a final name.
    assert {r["output_path"] for r in runs.a_rows} <= set(runs.a_outputs)
    assert all(name.endswith((".png", ".jpg")) for name in runs.a_outputs)


@needs_ray
def test_the_resumed_run_on_a_cluster_address_finishes_the_rest_without_redoing_done_files(runs):
    assert runs.b_code == 1, runs.b_err  # 1: the corrupt file failed
    (summary,) = [line["summary"] for line in runs.b_lines if "summary" in line]
    done_in_a = {r["path"] for r in runs.a_rows}
    assert summary["skipped"] == len(done_in_a)
    redone = {line["path"] for line in runs.b_lines if "path" in line}
    assert not redone & done_in_a
    assert redone | done_in_a == set(runs.inputs)
    for row in runs.a_rows:  # the very same files, not rewritten
        out = runs.dst / row["output_path"]
        assert (out.stat().st_ino, out.stat().st_mtime_ns) == runs.a_outputs[row["output_path"]]


@needs_ray
def test_every_input_has_exactly_one_output_and_one_row(runs):
    by_path: dict[str, list[dict]] = {}
    for row in runs.rows:
        by_path.setdefault(row["path"], []).append(row)
    assert set(by_path) == set(runs.inputs)
    assert all(len(rows) == 1 for rows in by_path.values()), {p: len(r) for p, r in by_path.items()}
    outputs = sorted(
        p.relative_to(runs.dst).as_posix()
        for p in runs.dst.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    good = sorted(rel for rel in runs.inputs if rel != CORRUPT)
    assert outputs == good  # same tree, same names, nothing else (no temp files)
    for rel in good:
        (row,) = by_path[rel]
        assert row["status"] == "ok" and row["output_path"] == rel
        assert row["sha256"] == runs.inputs[rel]
        assert {"input", "output", "status", "error", "target", "psnr", "ssim", "seconds"} <= row.keys()
        assert row["target"] == "pixelart" and row["psnr"] > 30


@needs_ray
def test_an_output_left_without_its_row_is_overwritten_not_duplicated(runs):
    assert len(runs.planted) == 2
    for rel, stale in runs.planted.items():
        assert not (runs.dst / stale).exists() or (runs.dst / stale).read_bytes() != b"left by a crash"
        (row,) = [r for r in runs.rows if r["path"] == rel]
        assert row["output_path"] == rel
        assert Image.open(runs.dst / rel).size == Image.open(runs.src / rel).size
    # every other output name is checked in test_every_input_has_exactly_one_output_and_one_row


@needs_ray
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(runs):
    assert "killed" in runs.killed, runs.killed
    assert "a worker died" in runs.b_err and "trying again (2 of 3)" in runs.b_err, runs.b_err
    (summary,) = [line["summary"] for line in runs.b_lines if "summary" in line]
    assert summary["retried"] >= 1
    b_rows = [line["path"] for line in runs.b_lines if "path" in line]
    assert len(b_rows) == len(set(b_rows))  # each file finished once, whoever cloaked it
    # (one output and one row per input: test_every_input_has_exactly_one_output_and_one_row)


@needs_ray
def test_a_corrupt_file_is_recorded_as_failed_and_the_others_complete(runs):
    (row,) = [r for r in runs.rows if r["path"] == CORRUPT]
    assert row["status"] == "failed" and row["output"] is None and row["attempts"] == 1
    assert row["error"].startswith(f"{CORRUPT}: ") and "\n" not in row["error"]
    assert row["sha256"] == runs.inputs[CORRUPT]
    assert sum(r["status"] == "ok" for r in runs.rows) == GOOD


@needs_ray
def test_the_inputs_are_never_modified(runs):
    after = {p.relative_to(runs.src).as_posix(): _sha(p) for p in runs.src.rglob("*") if p.is_file()}
    assert after == runs.inputs


@needs_ray
def test_a_rerun_with_nothing_left_starts_no_ray_and_keeps_the_manifest(runs, capsys):
    good_only = runs.src.parent / "good-only"
    for rel in runs.inputs:
        if rel != CORRUPT:
            (good_only / rel).parent.mkdir(parents=True, exist_ok=True)
            (good_only / rel).write_bytes((runs.src / rel).read_bytes())
    before = (runs.dst / MANIFEST_NAME).read_bytes()
    started = time.monotonic()
    assert main(["batch", str(good_only), str(runs.dst), "--json", *CLOAK]) == 0
    assert time.monotonic() - started < 10  # no Ray, no models
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["summary"]["skipped"] == GOOD and line["summary"]["done"] == 0
    assert (runs.dst / MANIFEST_NAME).read_bytes() == before
    assert not sys.modules["ray"].is_initialized()
