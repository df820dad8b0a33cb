"""sfumato check and the quick check: figures agree with independent computations, and a cloak
that does not protect is marked INCOMPLETE, never passed off as protected."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from daemonkit import art, files_under, write_config
from enginekit import TINY_CLIP as TINY
from enginekit import VANGOGH, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from sfumato.cli import main
from sfumato.cloak_report import BudgetReport, CloakReport
from sfumato.config import load_config
from sfumato.daemon import Daemon
from sfumato.engine.cloak import working_copy
from sfumato.engine.encoders import load_encoder
from sfumato.engine.stylizers import STYLIZERS
from sfumato.options import CheckRequest, CloakRequest
from sfumato.pipeline import Cloaker
from sfumato.specs import StyleKind, StyleRequest
from sfumato.verify.figures import visual_change
from sfumato.verify.protection import transform_figures
from sfumato.verify.purifiers import PURIFIERS, Purifier
from sfumato.verify.quick import quick_check
from sfumato.verify.report import check_images
from sfumato.verify.targets import builtin_target
from sfumato.verify.transforms import TRANSFORMS
from sfumato.verify.visibility import PHRASES

VAN_GOGH = VANGOGH / "sunflowers-1888.png"


def picture(size: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth picture with some texture, as floats on the 8-bit grid."""
    if VAN_GOGH.is_file():
        image = Image.open(VAN_GOGH).convert("RGB").resize((size, size), Image.LANCZOS)
        return np.asarray(image, dtype=np.float32) / 255
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    rgb = np.stack([x, y, (x + y) / 2], axis=2) * 200 + rng.integers(0, 40, (size, size, 3))
    return np.round(rgb).astype(np.float32) / 255


def save(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.round(pixels * 255).astype(np.uint8), "RGB").save(path)
    return path


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as Wang et al. define it: 11-tap Gaussian window (σ 1.5), reflected borders, mean."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def smooth(x: np.ndarray) -> np.ndarray:
        x = np.pad(x, ((5, 5), (5, 5)), mode="reflect")
        x = np.apply_along_axis(lambda r: np.convolve(r, taps, mode="valid"), 0, x)
        return np.apply_along_axis(lambda r: np.convolve(r, taps, mode="valid"), 1, x)

    c1, c2 = 0.01**2, 0.03**2
    scores = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = smooth(x), smooth(y)
        vx, vy, cxy = smooth(x * x) - mx**2, smooth(y * y) - my**2, smooth(x * y) - mx * my
        scores.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(scores))


# ----- visual change ----------------------------------------------------------------------


def test_visual_figures_agree_with_independent_formulas():
    original = picture(48)
    rng = np.random.default_rng(3)
    step = rng.choice([-3, 0, 0, 3], size=original.shape)  # ±3/255 on about half the samples
    changed = np.clip(original + step / 255, 0, 1).astype(np.float32)
    figures = visual_change(original, changed)
    mse = np.mean((original.astype(np.float64) - changed) ** 2)
    assert figures["psnr"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-3)
    assert figures["ssim"] == pytest.approx(numpy_ssim(original, changed), abs=1e-4)
    assert figures["max_change"] == pytest.approx(np.abs(original - changed).max() * 255, abs=1e-3)
    moved = (np.abs(original - changed) > 0.5 / 255).any(axis=2).mean()
    assert figures["changed_share"] == pytest.approx(moved, abs=1e-5)
    assert 0 < figures["changed_share"] < 1 and figures["ssim"] < 1


def test_identical_images_have_no_change():
    original = picture(32)
    figures = visual_change(original, original.copy())
    assert figures == {"psnr": None, "ssim": 1.0, "max_change": 0.0, "changed_share": 0.0}


# ----- protection -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("effnet-lite:0", "cpu")


def test_shift_and_cosines_agree_with_hand_computation(effnet):
    x = working_copy(picture(64), 64, torch.device("cpu"))
    target = builtin_target("halftone", x)
    c = (0.7 * x + 0.3 * target.image).clamp(0, 1)  # a third of the way, in pixels
    figures = transform_figures(effnet, x, c, target, TRANSFORMS["none"])
    with torch.no_grad():
        ex, ec, et = (F.normalize(effnet.embed(i), dim=1)[0].double() for i in (x, c, target.image))
    expected_shift = float((ec - ex) @ (et - ex) / ((et - ex) @ (et - ex)))
    assert figures["shift"] == pytest.approx(expected_shift, abs=1e-3)
    assert figures["cos_original_target"] == pytest.approx(float(ex @ et), abs=1e-4)
    assert figures["cos_cloaked_target"] == pytest.approx(float(ec @ et), abs=1e-4)
    assert figures["cos_cloaked_original"] == pytest.approx(float(ec @ ex), abs=1e-4)
    assert figures["cos_cloaked_target"] > figures["cos_original_target"]  # moved toward it
    assert figures["shift"] > 0.05


def test_auto_style_finds_the_style_the_image_moved_toward(effnet):
    original = picture(64)
    x = torch.from_numpy(original).permute(2, 0, 1)[None]
    toward = (0.6 * x + 0.4 * STYLIZERS["halftone"](x)).clamp(0, 1)
    moved = toward[0].permute(1, 2, 0).numpy()
    report = check_images(original, moved, [effnet])
    assert report["target"] == "halftone" and report["target_chosen"].startswith("auto")
    assert report["auto_cosine_gains"]["halftone"] == max(report["auto_cosine_gains"].values()) > 0
    entry = report["encoders"][0]
    assert set(entry["transforms"]) == {"none", "jpeg75", "half-size", "blur", "screenshot"}
    assert entry["shift"] > 0.1 and entry["label_before"] and entry["label_after"]


def test_an_unchanged_image_moves_nowhere(effnet):
    original = picture(48)
    report = check_images(original, original.copy(), [effnet], style="sketch")
    assert report["target"] == "sketch"
    rows = report["encoders"][0]["transforms"].values()
    assert all(abs(row["shift"]) < 1e-4 and row["label_before"] == row["label_after"] for row in rows)


def test_check_cli_json_and_text(tmp_path, capsys):
    original = picture(64)
    x = torch.from_numpy(original).permute(2, 0, 1)[None]
    moved = (0.6 * x + 0.4 * STYLIZERS["mosaic"](x)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    a, b = save(original, tmp_path / "a.png"), save(moved, tmp_path / "b.png")
    args = ["check", str(a), str(b), "--encoder", "effnet-lite:0", "--encoder", TINY, "--threads", "1"]
    assert main([*args, "--style", "mosaic", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "mosaic" and report["psnr"] > 10
    assert [e["encoder"] for e in report["encoders"]] == ["effnet-lite:0", TINY]
    assert report["encoders"][0]["shift"] > 0
    assert report["encoders"][1]["label_before"]  # open_clip: a phrase of the built-in vocabulary
    seen = report["visibility"]
    assert seen["jod"] < 10 and seen["ssimulacra2"] < 100 and seen["phrase"] in {p[0] for p in PHRASES}
    assert (seen["psnr"], seen["ssim"]) == (report["psnr"], report["ssim"])
    assert report["purifiers"] == list(PURIFIERS)
    for entry in report["encoders"]:
        assert set(entry["purifiers"]) == set(PURIFIERS)
        shifts = {name: row["shift"] for name, row in entry["purifiers"].items()}
        assert entry["worst_purified_shift"] == min(shifts.values()) == shifts[entry["worst_purifier"]]
    assert main([*args, "--style", "a red bicycle"]) == 0  # text: effnet knows no such class
    out = capsys.readouterr().out
    assert "target         a red bicycle" in out and "cannot embed text" in out
    assert "visibility     " in out and "JOD on a 4K display" in out
    assert "worst after a purifier" in out  # open_clip embeds the text
    assert main([*args, "--no-visibility", "--no-purifiers", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "visibility" not in report and report["purifiers"] == []
    assert all("purifiers" not in entry for entry in report["encoders"])


def test_purifier_shift_is_measured_from_the_purified_original(effnet):
    """A 'purifier' that turns every picture into its target moves no cloak anywhere: the shift
    after it starts from the purified original, so that move is not counted as protection."""
    original = picture(48)
    x = torch.from_numpy(original).permute(2, 0, 1)[None]
    styled = Purifier("to-halftone", lambda images: STYLIZERS["halftone"](images).clamp(0, 1))
    report = check_images(original, original.copy(), [effnet], style="halftone", purifiers={"h": styled})
    entry = report["encoders"][0]
    assert abs(entry["purifiers"]["h"]["shift"]) < 1e-4 and entry["worst_purifier"] == "h"
    naive = transform_figures(effnet, x, styled(x), builtin_target("halftone", x), TRANSFORMS["none"])
    assert naive["shift"] > 0.5  # measured from the untouched original, it would look protected


def test_check_refuses_images_of_different_sizes(tmp_path, capsys):
    a = save(picture(32), tmp_path / "a.png")
    b = save(picture(48), tmp_path / "b.png")
    assert main(["check", str(a), str(b), "--encoder", TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "b.png is 48×48" in err and "a.png is 32×32" in err


# ----- the quick check and incomplete marking ---------------------------------------------


def cloak_options(**check) -> CloakRequest:
    return CloakRequest(
        style="halftone",
        encoders=("effnet-lite:0",),
        device="cpu",
        threads=1,
        steps=3,
        quality="fast",
        check=CheckRequest(**{"encoder": "effnet-lite:0", **check}),
    )


def test_a_cloak_that_passes_keeps_its_name(tmp_path):
    src = save(picture(64), tmp_path / "art.png")
    outcome = Cloaker(device="cpu", threads=1).cloak_file(
        src, tmp_path / "out" / "art.png", cloak_options(threshold=0.01)
    )
    assert outcome.status == "ok" and outcome.output == tmp_path / "out" / "art.png"
    check = outcome.report.check
    assert check.passed and check.shift >= 0.01 and set(check.shifts) == {"none", "jpeg75"}
    assert outcome.report.reason is None


def test_a_cloak_below_the_threshold_is_written_incomplete(tmp_path):
    src = save(picture(64), tmp_path / "art.png")
    data = src.read_bytes()
    outcome = Cloaker(device="cpu", threads=1).cloak_file(
        src, tmp_path / "out" / "art.png", cloak_options(threshold=1.0)
    )
    assert outcome.status == "incomplete"
    assert files_under(tmp_path / "out") == ["INCOMPLETE-art.png"]
    assert "below the threshold 1" in outcome.report.reason and "effnet-lite:0" in outcome.report.reason
    assert src.read_bytes() == data


@pytest.mark.parametrize("enabled", [True, False])
def test_intensity_zero_is_always_incomplete(tmp_path, enabled):
    src = save(picture(48), tmp_path / "art.png")
    options = CloakRequest(
        style="sketch",
        intensity=0,
        encoders=(TINY,),
        device="cpu",
        threads=1,
        steps=1,
        check=CheckRequest(enabled=enabled, encoder=TINY, threshold=0.0),
    )
    outcome = Cloaker(device="cpu", threads=1).cloak_file(src, tmp_path / "out" / "art.png", options)
    assert outcome.status == "incomplete" and outcome.output.name == "INCOMPLETE-art.png"
    assert "changed no pixel" in outcome.report.reason


def test_quick_check_names_the_transform_that_failed(effnet):
    original = picture(64)
    x = torch.from_numpy(original).permute(2, 0, 1)[None]
    moved = (0.8 * x + 0.2 * STYLIZERS["halftone"](x)).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    report = CloakReport(
        StyleRequest(StyleKind.BUILTIN, "halftone"), "default", "fast", BudgetReport(8, 35, 9.5, 60, 2),
        40.0, 0.99, 8.0, (), None, 1, 1, (64, 64), "cpu", 0, 0.01,
    )  # fmt: skip
    settings = CheckRequest(enabled=True, encoder="effnet-lite:0", threshold=0.0)
    verdict = quick_check(original, moved, report, settings, [effnet])
    assert verdict.passed and verdict.shift == min(verdict.shifts.values()) > 0
    failing = quick_check(original, moved, report, replace(settings, threshold=0.99), [effnet])
    assert not failing.passed and "0.99" in failing.reason


def test_cloak_cli_reports_incomplete(tmp_path, capsys):
    src = save(picture(48), tmp_path / "art.png")
    out = tmp_path / "out"
    args = [
        "cloak",
        str(src),
        "-o",
        str(out),
        "--encoder",
        TINY,
        "--steps",
        "1",
        "--style",
        "sketch",
        "--threads",
        "1",
    ]
    assert main([*args, "--intensity", "0", "--json", "--check-encoder", TINY]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "incomplete" and record["output"] == str(out / "INCOMPLETE-art.png")
    assert "changed no pixel" in record["reason"]
    assert main([*args, "--intensity", "0", "--no-check", "--force"]) == 1
    assert "INCOMPLETE" in capsys.readouterr().err


def test_daemon_puts_an_incomplete_cloak_in_ready_under_its_marked_name(tmp_path):
    config_path = write_config(
        tmp_path,
        defaults=f'encoders = ["{TINY}"]\nintensity = 0\nstyle = "sketch"\nsteps = 1\n'
        'device = "cpu"\nthreads = 1\nskip_unavailable_encoders = false\n'
        "[defaults.check]\nenabled = false\n",
    )
    folders = art(tmp_path)
    folders["outbox"].mkdir(parents=True)
    save(picture(48), folders["outbox"] / "art.png")
    config = load_config(config_path)
    assert Daemon(config, config_path=config_path).run(once=True) == 0
    assert files_under(folders["ready"]) == ["INCOMPLETE-art.png"]
    assert files_under(folders["originals"]) == ["art.png"]


def test_check_a_poison_against_its_target_concept(tmp_path, capsys):
    a = save(picture(48), tmp_path / "a.png")
    b = save(np.clip(picture(48) + 2 / 255, 0, 1), tmp_path / "b.png")
    args = ["check", str(a), str(b), "--encoder", "effnet-lite:0", "--threads", "1", "--json"]
    assert main([*args, "--poison", "vase:purse"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["target"], report["target_kind"], report["poison"]) == ("purse", "text", "vase:purse")
    assert "shift" in report["encoders"][0] and report["encoders"][0]["label_after"]
    rows = report["encoders"][0]["purifiers"].values()
    assert all(isinstance(row["hit"], bool) for row in rows)  # purse is an ImageNet class
    assert report["encoders"][0]["hit_after_every_purifier"] == all(row["hit"] for row in rows)
    assert main([*args, "--poison", "vase:auto"]) == 2
    assert "needs the target concept" in capsys.readouterr().err


def test_check_purifies_through_an_autoencoder_only_when_given_one(tmp_path, capsys, effnet):
    from enginekit import TAEF2_DIR
    from sfumato.commands.check import check_purifiers
    from sfumato.errors import UsageError
    from sfumato.verify.purifiers import VAE_PURIFIER

    assert list(check_purifiers(None, [effnet], torch.device("cpu"))) == list(PURIFIERS)
    with pytest.raises(UsageError, match="no decoder"):
        check_purifiers("effnet-lite:0", [effnet], torch.device("cpu"))
    if not (TAEF2_DIR / "taef2_encoder.pth").is_file():
        pytest.skip(f"the shared TAEF2 weights are not at {TAEF2_DIR}")
    a, b = (
        save(picture(32), tmp_path / "a.png"),
        save(np.clip(picture(32) + 2 / 255, 0, 1), tmp_path / "b.png"),
    )
    args = ["check", str(a), str(b), "--encoder", "effnet-lite:0", "--threads", "1", "--style", "sketch"]
    assert main([*args, "--purifier-vae", f"tae:flux2@{TAEF2_DIR}", "--no-visibility", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["purifiers"] == [*PURIFIERS, VAE_PURIFIER]
    assert VAE_PURIFIER in report["encoders"][0]["purifiers"]
