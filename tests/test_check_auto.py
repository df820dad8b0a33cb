"""`check --style auto` names the target the daemon used for a file its ledger knows."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from daemonkit import write_config
from enginekit import one_thread  # noqa: F401 (an autouse fixture)
from sfumato.cli import main
from sfumato.engine.stylizers import STYLIZERS
from sfumato.fileops import file_sha256
from sfumato.ledger import Ledger

CHECK = ["--encoder", "effnet-lite:0", "--threads", "1", "--no-purifiers", "--no-visibility", "--json"]


def pair(tmp_path):
    """An original and a copy moved toward mosaic, which is what auto alone finds."""
    rng = np.random.default_rng(3)
    original = np.clip(rng.random((64, 64, 3)) * 0.5 + np.linspace(0, 0.5, 64)[None, :, None], 0, 1)
    x = torch.from_numpy(original.astype(np.float32)).permute(2, 0, 1)[None]
    moved = (0.5 * x + 0.5 * STYLIZERS["mosaic"](x)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    paths = tmp_path / "original.png", tmp_path / "cloaked.png"
    for path, pixels in zip(paths, (original, moved), strict=True):
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(path)
    return paths


def check_json(capsys, *args: str) -> dict:
    assert main(["check", *args, *CHECK]) == 0
    return json.loads(capsys.readouterr().out)


def test_auto_names_the_daemons_target_for_a_file_its_ledger_knows(tmp_path, capsys):
    original, cloaked = pair(tmp_path)
    config = write_config(tmp_path)
    alone = check_json(capsys, str(original), str(cloaked), "--config", str(config))  # no ledger yet
    assert alone["target"] == "mosaic" and alone["target_chosen"].startswith("auto: the built-in")
    ledger = Ledger(tmp_path / "state")
    job = ledger.add("outbox", "original.png", 1, 0.0, file_sha256(original), state="done")
    ledger.update(job, target="halftone")
    ledger.close()
    known = check_json(capsys, str(original), str(cloaked), "--config", str(config))
    assert known["target"] == "halftone" and "daemon" in known["target_chosen"]
    given = check_json(capsys, str(original), str(cloaked), "--config", str(config), "--style", "sketch")
    assert given["target"] == "sketch" and "target_chosen" not in given
