"""The held-out latent judge: pinned, never an ensemble member, a real stand-in for TAEF2, and used
by the quick check, ``sfumato check`` and ``bench/latent.py``."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from enginekit import TAEF2_DIR, artwork, as_array, one_thread  # noqa: F401 (one_thread: autouse)
from sfumato.cloak_report import BudgetReport, CloakReport
from sfumato.commands.check import format_report
from sfumato.engine.cloak import cloak_image
from sfumato.engine.encoders import Encoder, load_encoder
from sfumato.engine.objectives import projection_shift, unit
from sfumato.engine.stylizers import STYLIZERS
from sfumato.errors import EncoderError, UnknownEncoderError
from sfumato.options import CheckRequest, CloakRequest
from sfumato.specs import StyleKind, StyleRequest
from sfumato.verify import judge as judge_module
from sfumato.verify.judge import JUDGE_SPEC, LatentJudge, load_judge, verified_state
from sfumato.verify.judge.net import DOWNSAMPLING
from sfumato.verify.judge.shift import latent_shift
from sfumato.verify.judge.verdict import LATENT_THRESHOLD
from sfumato.verify.quick import quick_check
from sfumato.verify.report import check_images
from sfumato.verify.transforms import TRANSFORMS

BENCH = Path(__file__).resolve().parents[1] / "bench"
needs_taef2 = pytest.mark.skipif(
    not (TAEF2_DIR / "taef2_encoder.pth").is_file(), reason=f"the shared TAEF2 weights are not at {TAEF2_DIR}"
)


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]


def pixels(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).numpy()


def toward(x: torch.Tensor, style: str, share: float) -> torch.Tensor:
    """``share`` of the way to the restyled picture, in pixels: every model sees that move."""
    return ((1 - share) * x + share * STYLIZERS[style](x)).clamp(0, 1)


class LatentStub(Encoder):
    """A latent ensemble member that is never asked to embed (the quick check only reads its kind)."""

    spatial = True
    spec = "tae:stub"

    def __init__(self) -> None:
        super().__init__((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# ----- the judge itself ---------------------------------------------------------------------


def test_judge_loads_quickly_and_its_weights_are_pinned(tmp_path):
    judge_module._load.cache_clear()
    started = time.perf_counter()
    judge = load_judge("cpu")
    assert time.perf_counter() - started < 1.0
    assert judge.spec == JUDGE_SPEC and judge.downsampling == DOWNSAMPLING == 16
    assert hashlib.sha256(judge_module.WEIGHTS.read_bytes()).hexdigest() == judge_module.SHA256
    assert judge_module.WEIGHTS.stat().st_size < 1_000_000
    assert judge.embed(torch.rand(1, 3, 64, 96)).shape == (1, 32, 4, 6)
    tampered = tmp_path / "judge.pt"
    data = bytearray(judge_module.WEIGHTS.read_bytes())
    data[-100] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="not the pinned latent judge"):
        verified_state(tampered)


def test_the_search_never_optimises_against_the_judge():
    """The registry refuses its spec, so no cloak, ensemble or check encoder can be the judge."""
    with pytest.raises(UnknownEncoderError, match="held-out latent judge"):
        load_encoder(JUDGE_SPEC, "cpu")
    options = CloakRequest(style="pixelart", encoders=(JUDGE_SPEC,), device="cpu", threads=1, steps=1)
    with pytest.raises(UnknownEncoderError, match="never optimised"):
        cloak_image(artwork(32), options)
    assert not isinstance(load_judge("cpu"), Encoder)


def test_latent_shift_is_the_projection_shift_of_unit_latents():
    judge = load_judge("cpu")
    x = tensor(as_array(artwork(64)))
    t = STYLIZERS["pixelart"](x)
    c = toward(x, "pixelart", 0.3)
    zx, zc, zt = (unit(judge.net(i)) for i in (x, c, t))
    assert latent_shift(judge, x, c, t) == pytest.approx(float(projection_shift(zc, zx, zt)[0]), abs=1e-5)
    assert latent_shift(judge, x, c, t) > 0.05
    assert latent_shift(judge, x, x, t) == pytest.approx(0.0, abs=1e-6)
    assert latent_shift(judge, x, t, t) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
@needs_taef2
def test_the_judge_is_a_stand_in_for_taef2_that_sees_less_of_a_white_box_cloak():
    """A cloak computed against TAEF2 moves the judge's latent too, but less than TAEF2's own."""
    original = artwork(128)
    spec = f"tae:flux2@{TAEF2_DIR}"
    options = CloakRequest(style="pixelart", encoders=(spec,), device="cpu", threads=1, steps=12)
    result = cloak_image(original, options)
    x, c = tensor(as_array(original)), tensor(result.pixels)
    t = STYLIZERS["pixelart"](x)
    taef2 = load_encoder(spec, "cpu")
    with torch.no_grad():
        white_box = float(projection_shift(*(unit(taef2.embed(i)) for i in (c, x, t)))[0])
    held_out = latent_shift(load_judge("cpu"), x, c, t)
    assert 0 < held_out < white_box


# ----- the quick check --------------------------------------------------------------------


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("effnet-lite:0", "cpu")


def quick_inputs(share: float) -> tuple[np.ndarray, np.ndarray, CloakReport]:
    original = as_array(artwork(64))
    moved = pixels(toward(tensor(original), "pixelart", share))
    report = CloakReport(
        StyleRequest(StyleKind.BUILTIN, "pixelart"), "default", "fast", BudgetReport(8, 35, 9.5, 60, 2),
        40.0, 0.99, 8.0, (), None, 1, 1, (64, 64), "cpu", 0, 0.01,
    )  # fmt: skip
    return original, moved, report


def test_a_latent_only_cloak_is_judged_by_the_judge_not_the_classifier(effnet):
    original, moved, report = quick_inputs(0.2)
    never = CheckRequest(
        enabled=True, encoder="effnet-lite:0", threshold=0.99
    )  # no classifier shift reaches this
    verdict = quick_check(original, moved, report, never, [LatentStub()])
    assert verdict.shift < 0.99  # the classifier did not move enough...
    assert verdict.passed and verdict.reason is None  # ...and the judge decides
    assert verdict.latent.passed and verdict.latent.members == ("tae:stub",)
    assert verdict.latent.shift == min(verdict.latent.shifts.values()) >= LATENT_THRESHOLD
    assert set(verdict.latent.shifts) == {"none", "jpeg75"}
    assert verdict.as_report()["latent"]["judge"] == JUDGE_SPEC


def test_a_latent_cloak_the_judge_does_not_see_is_incomplete(effnet):
    original, _, report = quick_inputs(0.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(original + rng.choice([-1, 1], original.shape) / 255, 0, 1).astype(np.float32)
    verdict = quick_check(
        original,
        noisy,
        report,
        CheckRequest(enabled=True, encoder="effnet-lite:0", threshold=0.0),
        [LatentStub()],
    )
    assert not verdict.passed and "held-out latent judge" in verdict.reason


def test_pooled_cloaks_are_judged_as_before(effnet):
    """No latent member: no judge, the same verdict and report; a mixed ensemble still needs the
    classifier for its pooled members."""
    original, moved, report = quick_inputs(0.2)
    never = CheckRequest(enabled=True, encoder="effnet-lite:0", threshold=0.99)
    pooled = quick_check(original, moved, report, never, [effnet])
    assert not pooled.passed and pooled.latent is None and "latent" not in pooled.as_report()
    assert "effnet-lite:0" in pooled.reason and "judge" not in pooled.reason
    mixed = quick_check(original, moved, report, never, [effnet, LatentStub()])
    assert not mixed.passed and mixed.latent.passed and "effnet-lite:0" in mixed.reason


# ----- sfumato check and bench/latent.py ------------------------------------------------------


def test_check_reports_the_judges_latent_shift(effnet):
    original, moved, _ = quick_inputs(0.3)
    report = check_images(original, moved, [effnet], style="pixelart", purifiers={}, visibility=False)
    latent = report["latent_judge"]
    assert latent["judge"] == JUDGE_SPEC and set(latent["transforms"]) == set(TRANSFORMS)
    assert latent["shift"] == latent["transforms"]["none"] > 0.05
    assert latent["worst_shift"] == min(latent["transforms"].values())
    assert "held-out latent judge" in format_report(report)
    text = check_images(original, moved, [effnet], style="a cow", purifiers={}, visibility=False)
    assert "latent_judge" not in text  # no target picture to compare latents with


def test_bench_latent_reports_the_judge_after_each_transform():
    sys.path.insert(0, str(BENCH))
    try:
        import latent
    finally:
        sys.path.remove(str(BENCH))
    original = artwork(64)
    x = tensor(as_array(original))
    target = STYLIZERS["pixelart"](x)
    cloak = Image.fromarray(np.round(pixels(toward(x, "pixelart", 0.3)) * 255).astype(np.uint8))
    shifts = latent.all_shifts(load_judge("cpu"), x, cloak, target)
    assert len(shifts) == 4 and all(s > 0.05 for s in shifts)  # cloak, JPEG 75, off-grid crop, 0.8×
    assert isinstance(load_judge("cpu"), LatentJudge)


def test_the_preview_footer_names_the_latent_judge(tmp_path, monkeypatch):
    from sfumato.verify import preview

    seen = []
    monkeypatch.setattr(preview, "footer_phrases", lambda _f, _t, verdict: seen.append(verdict) or [])
    original, moved, _ = quick_inputs(0.2)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for array, path in ((original, a), (moved, b)):
        Image.fromarray(np.round(array * 255).astype(np.uint8)).save(path)
    check = {"encoder": "effnet-lite:1", "shift": 0.001, "passed": True, "threshold": 0.05}
    preview.preview_for_files(a, b, {"target": "pixelart", "check": check}, tmp_path)
    latent = {**check, "latent": {"shift": 0.042}}
    preview.preview_for_files(a, b, {"target": "pixelart", "check": latent}, tmp_path)
    assert seen == [
        "check effnet-lite:1: shift 0.001 (passed)",
        "check effnet-lite:1: shift 0.001, latent judge 0.042 (passed)",
    ]
