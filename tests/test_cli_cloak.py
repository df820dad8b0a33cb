"""`sfumato cloak` end to end: files in, cloaked files out, the inputs never touched."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from enginekit import artwork
from sfumato.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--encoder", "effnet-lite:0", "--steps", "2", "--threads", "2", "--no-check", "--style", "pixelart"]


def cloak(*args: str) -> int:
    return main(["cloak", *args, *FAST])


def json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_png_with_alpha_keeps_size_format_and_exact_alpha(tmp_path, capsys):
    rgba = artwork(80).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (80, 1))
    rgba.putalpha(Image.fromarray(alpha))
    src = tmp_path / "layered.png"
    rgba.save(src)
    before = src.read_bytes()
    assert cloak(str(src), "-o", str(tmp_path / "out"), "--json") == 0
    (record,) = json_lines(capsys)
    out = Image.open(record["output"])
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (80, 80)
    assert np.array_equal(np.asarray(out)[..., 3], alpha)
    assert not np.array_equal(np.asarray(out)[..., :3], np.asarray(rgba)[..., :3])
    assert src.read_bytes() == before
    assert {"input", "output", "status", "error", "target", "psnr", "ssim", "seconds"} <= record.keys()
    assert record["status"] == "ok" and record["error"] is None and record["target"] == "pixelart"


def test_jpeg_stays_jpeg_and_exif_orientation_is_applied(tmp_path):
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: upright is 60 wide, 90 tall
    artwork(96).resize((90, 60)).save(src, quality=95, exif=exif.tobytes())
    assert cloak(str(src), "-o", str(tmp_path / "out")) == 0
    out = Image.open(tmp_path / "out" / "phone.jpg")
    assert out.format == "JPEG" and out.size == (60, 90)
    assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1


def test_existing_output_is_kept_without_force(tmp_path, capsys):
    src = tmp_path / "a.png"
    artwork(64).save(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"earlier result")
    assert cloak(str(src), "-o", str(out), "--json") == 1
    (record,) = json_lines(capsys)
    assert record["status"] == "failed" and "already exists" in record["error"]
    assert (out / "a.png").read_bytes() == b"earlier result"
    assert cloak(str(src), "-o", str(out), "--force") == 0
    assert Image.open(out / "a.png").size == (64, 64)


def test_a_bad_file_fails_alone_with_one_sentence_naming_it(tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "notes.png"
    artwork(64).save(good)
    bad.write_text("not a picture")
    assert cloak(str(good), str(bad), "-o", str(tmp_path / "out"), "--json") == 1
    records = {r["input"]: r for r in json_lines(capsys)}
    assert records[str(good)]["status"] == "ok"
    failed = records[str(bad)]
    assert failed["status"] == "failed" and failed["error"].startswith("notes.png")
    assert "\n" not in failed["error"]
    assert not (tmp_path / "out" / "notes.png").exists()


def test_a_picture_too_small_to_cloak_fails_in_one_sentence_without_a_traceback(tmp_path, capsys):
    """A 1×1 PNG once crashed the search with a padding RuntimeError and a traceback."""
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    assert cloak(str(tiny), "-o", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeError" not in err
    (line,) = [line for line in err.splitlines() if "dot.png" in line]
    assert line == (
        "failed  dot.png: 1×1 pixels is too small to cloak (at least 32 pixels on the short side)"
    )
    assert not (tmp_path / "out" / "dot.png").exists()


def test_folders_expand_to_their_images(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    for name in ("one.png", "two.jpg"):
        artwork(48).save(folder / name)
    (folder / "readme.txt").write_text("skip me")
    assert cloak(str(folder), "-o", str(tmp_path / "out")) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.png", "two.jpg"]


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse rejects bad choices itself
        return stop.code


@pytest.mark.parametrize(
    "args",
    [["--intensity", "extreme"], ["--quality", "instant"], ["--encoder", "resnet:50"]],
)
def test_bad_usage_exits_2_and_writes_nothing(tmp_path, args):
    src = tmp_path / "a.png"
    artwork(32).save(src)
    assert exit_status(["cloak", str(src), "-o", str(tmp_path / "out"), *args]) == 2
    assert not (tmp_path / "out").exists()


def test_outputs_get_ordinary_file_permissions(tmp_path):
    src = tmp_path / "a.png"
    artwork(32).save(src)
    old = os.umask(0o022)
    try:
        assert cloak(str(src), "-o", str(tmp_path / "out")) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "a.png").stat().st_mode) == 0o644


def _sfumato(*args: str, cwd) -> subprocess.CompletedProcess:
    """A real ``sfumato`` process: a library's first log call configures logging only there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFUMATO_")}
    env.update(PYTHONPATH=str(REPO / "daemon"), HF_HUB_OFFLINE="1")  # ViT-B-32 is not cached
    command = [sys.executable, "-m", "sfumato", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_library_and_own_warnings_do_not_leak_as_python_logging_lines(tmp_path):
    """``WARNING:root:No pretrained weights loaded...`` and ``WARNING:sfumato...:`` lines."""
    src = tmp_path / "a.png"
    artwork(64).save(src)
    check = _sfumato("check", str(src), str(src), "--encoder", "openclip:sfumato-tiny/random", cwd=tmp_path)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    cloaked = _sfumato("cloak", str(src), "--steps", "2", "--no-check", "--style", "pixelart", cwd=tmp_path)
    assert cloaked.returncode == 0, cloaked.stderr
    first, second = cloaked.stderr.splitlines()
    assert first.startswith("sfumato: leaving openclip:ViT-B-32/") and "out of the ensemble" in first
    assert second.startswith(f"ok      {src} -> cloaked/a.png")
