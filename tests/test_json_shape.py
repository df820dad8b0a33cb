"""`sfumato cloak --json` keeps its shape: every key, in order, with the type of every value."""

from __future__ import annotations

import json

from enginekit import artwork
from sfumato.cli import main

FAST = ["--encoder", "effnet-lite:0", "--steps", "2", "--threads", "2"]
HEAD = ["input", "output", "status", "error", "target", "psnr", "ssim", "seconds"]
ENGINE = [
    "target_kind", "intensity", "quality", "budget", "max_change", "encoders", "poison", "steps",
    "views", "working_size", "device", "seed", "skipped_encoders",
]  # fmt: skip
BUDGET = {
    "max_change": "float",
    "psnr_floor": "float",
    "jod_floor": "float",
    "ssimulacra2_floor": "float",
    "mean_budget": "float",
}
CHECK = {
    "passed": "bool", "encoder": "str", "held_out": "bool", "threshold": "float", "shift": "float",
    "shifts": {"none": "float", "jpeg75": "float"}, "seconds": "float",
}  # fmt: skip


def shape(value):
    """Keys in order and the type names of the leaves; a list by its first element."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def cloak_json(tmp_path, capsys, *args: str) -> dict:
    src = tmp_path / "a.png"
    artwork(64).save(src)
    main(["cloak", str(src), "-o", str(tmp_path / "out"), "--json", *FAST, *args])
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    return json.loads(line)


def common(record: dict) -> None:
    assert shape(record["budget"]) == BUDGET
    assert shape(record["working_size"]) == ["int"] and shape(record["skipped_encoders"]) == []
    for key, kind in (("psnr", "float"), ("ssim", "float"), ("seconds", "float"), ("max_change", "float")):
        assert shape(record[key]) == kind
    for key, kind in (("steps", "int"), ("views", "int"), ("seed", "int"), ("device", "str")):
        assert shape(record[key]) == kind
    assert shape(record["intensity"]) == "str" and shape(record["quality"]) == "str"


def test_a_checked_style_cloak_has_todays_keys_in_order(tmp_path, capsys):
    record = cloak_json(tmp_path, capsys, "--style", "pixelart", "--check-encoder", "effnet-lite:0",
                        "--check-threshold", "0")  # fmt: skip
    assert list(record) == [*HEAD, *ENGINE, "check"]
    common(record)
    assert record["status"] == "ok" and record["error"] is None and record["poison"] is None
    assert shape(record["encoders"]) == [
        {"encoder": "str", "loss_before": "float", "loss_after": "float", "shift": "float"}
    ]
    assert shape(record["check"]) == {**CHECK, "reason": "NoneType"}


def test_an_incomplete_cloak_adds_the_reason_last(tmp_path, capsys):
    record = cloak_json(tmp_path, capsys, "--style", "pixelart", "--check-encoder", "effnet-lite:0",
                        "--check-threshold", "1")  # fmt: skip
    assert list(record) == [*HEAD, *ENGINE, "check", "reason"]
    assert record["status"] == "incomplete" and shape(record["reason"]) == "str"
    assert shape(record["check"]) == {**CHECK, "reason": "str"}


def test_a_poison_cloak_without_check_reports_the_poison(tmp_path, capsys):
    record = cloak_json(tmp_path, capsys, "--style", "none", "--poison", "auto:purse", "--no-check")
    assert list(record) == [*HEAD, *ENGINE]
    common(record)
    assert record["encoders"] == [] and record["target_kind"] == "none"
    assert shape(record["poison"]) == {
        "concept": "str", "concept_confidence": "float", "concept_auto": "bool", "target": "str",
        "target_auto": "bool", "targeted_success": "float", "target_rank": {"effnet-lite:0": "int"},
    }  # fmt: skip


def test_a_failed_input_has_only_the_head(tmp_path, capsys):
    main(["cloak", str(tmp_path / "missing.png"), "-o", str(tmp_path / "out"), "--json", *FAST])
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    record = json.loads(line)
    assert list(record) == HEAD and record["status"] == "failed" and shape(record["error"]) == "str"
