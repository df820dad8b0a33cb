"""The preview picture: the expected size and panels, captions and figures, decoded panels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enginekit import TAEF2_DIR, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from enginekit import TINY_CLIP as TINY
from sfumato.cli import main
from sfumato.engine.encoders import load_encoder
from sfumato.verify.preview import (
    BACKGROUND,
    GAP,
    MIN_SIDE,
    PANEL_SIDE,
    build_preview,
    panel_boxes,
    panel_size,
    render_preview,
)


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / width, y / height, np.full(x.shape, 0.5)], axis=2) * 255
    return np.round(rgb).astype(np.float32) / 255


def right_half_changed(pixels: np.ndarray, step: int = 4) -> np.ndarray:
    changed = pixels.copy()
    w = pixels.shape[1]
    changed[:, w // 2 :] = np.clip(changed[:, w // 2 :] + step / 255, 0, 1)
    return changed


def panels_of(preview: Image.Image, size: tuple[int, int], count: int) -> list[np.ndarray]:
    return [np.asarray(preview.crop(box), dtype=np.int16) for box in panel_boxes(size, count)]


def test_three_panels_show_original_cloaked_and_where_it_changed():
    original = gradient(240, 320)
    cloaked = right_half_changed(original)
    preview = render_preview(original, cloaked, ["PSNR 40.0 dB", "SSIM 0.990"])
    size = panel_size(240, 320)
    assert size == (320, 240)  # fits the panel limit: shown at its own size
    assert preview.width == GAP + 3 * (size[0] + GAP)
    first, second, change = panels_of(preview, size, 3)
    assert np.array_equal(first, np.round(original * 255))
    assert np.array_equal(second, np.round(cloaked * 255))
    left, right = change[:, : size[0] // 2 - 2], change[:, size[0] // 2 + 2 :]
    assert left.max() == 0  # unchanged: black
    assert right.mean() > 100  # changed everywhere there: bright
    below = np.asarray(preview.crop((0, panel_boxes(size, 3)[0][3], preview.width, preview.height)))
    assert (below != BACKGROUND).any(axis=2).sum() > 100  # the footer's figures are drawn


def test_large_images_are_shown_at_panel_size_and_tiny_ones_enlarged():
    big = render_preview(gradient(600, 1200), gradient(600, 1200), ["x"])
    assert panel_size(600, 1200) == (PANEL_SIDE, PANEL_SIDE // 2)
    assert big.width == GAP + 3 * (PANEL_SIDE + GAP)
    tiny_size = panel_size(20, 40)
    assert tiny_size == (MIN_SIDE, MIN_SIDE // 2)
    original = gradient(20, 40)
    tiny = render_preview(original, original, ["x"])
    first = panels_of(tiny, tiny_size, 1)[0]
    # enlarged pixel by pixel: the panel's top-left block is the first source pixel
    assert np.array_equal(first[:5, :5], np.broadcast_to(np.round(original[0, 0] * 255), (5, 5, 3)))


def test_decoded_panels_are_added_for_an_encoder_with_a_decoder():
    if not (TAEF2_DIR / "taef2_decoder.pth").is_file():
        pytest.skip(f"the shared TAEF2 weights are not at {TAEF2_DIR}")
    tae = load_encoder(f"tae:flux2@{TAEF2_DIR}")
    rng = np.random.default_rng(0)
    original = np.clip(gradient(64, 96) + rng.normal(0, 0.02, (64, 96, 3)), 0, 1).astype(np.float32)
    original = np.round(original * 255) / 255
    cloaked = right_half_changed(original)
    tiny = load_encoder(TINY)
    preview = build_preview(original, cloaked, ["x"], [tiny, tae])
    size = panel_size(64, 96)
    assert preview.width == GAP + 5 * (size[0] + GAP)
    panels = panels_of(preview, size, 5)
    for shown, decoded in ((panels[0], panels[3]), (panels[1], panels[4])):
        mse = np.mean((shown.astype(np.float64) - decoded) ** 2)
        assert 10 * np.log10(255**2 / mse) > 20  # the reconstruction resembles its input
        assert not np.array_equal(shown, decoded)  # ...but it is the decoder's picture
    assert build_preview(original, cloaked, ["x"], [tiny]).width == GAP + 3 * (size[0] + GAP)


def test_check_and_cloak_write_previews(tmp_path, capsys):
    original = gradient(40, 56)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.round(original * 255).astype(np.uint8)).save(a)
    Image.fromarray(np.round(right_half_changed(original) * 255).astype(np.uint8)).save(b)
    shown = tmp_path / "shown.png"
    args = ["check", str(a), str(b), "--encoder", TINY, "--style", "sketch", "--threads", "1"]
    assert main([*args, "--preview", str(shown), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["preview"] == str(shown)
    size = panel_size(40, 56)
    assert Image.open(shown).size[0] == GAP + 3 * (size[0] + GAP)
    out = tmp_path / "out"
    cloak = ["cloak", str(a), "-o", str(out), "--encoder", TINY, "--steps", "1", "--threads", "1"]
    main([*cloak, "--style", "sketch", "--check-encoder", TINY, "--preview", "--json"])
    record = json.loads(capsys.readouterr().out)
    cloaked_name = Path(record["output"]).stem
    assert record["preview"] == str(out / f"{cloaked_name}.preview.png")
    assert Image.open(record["preview"]).size[0] == GAP + 3 * (size[0] + GAP)
