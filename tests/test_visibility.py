"""Visibility: identical pictures score as no difference, visible noise clearly lower, large
images are measured tile by tile, and the phrase follows the documented thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from enginekit import artwork, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from sfumato.verify.visibility import PHRASES, TILE_PIXELS, measure_visibility, phrase_for, tiles


def painting(size: int = 96) -> np.ndarray:
    return np.asarray(artwork(size), dtype=np.float32) / 255


def test_identical_images_show_no_difference():
    x = painting()
    seen = measure_visibility(x, x.copy())
    assert seen.jod == pytest.approx(10, abs=0.01) and seen.ssimulacra2 == pytest.approx(100, abs=0.01)
    assert seen.phrase == "no visible difference" and seen.psnr is None
    report = seen.as_report()
    assert report["phrase"] == "no visible difference" and report["display"] == "standard_4k"


def test_visible_noise_scores_clearly_lower():
    x = painting()
    rng = np.random.default_rng(0)
    faint = np.clip(x + rng.normal(0, 1 / 255, x.shape), 0, 1).astype(np.float32)
    strong = np.clip(x + rng.normal(0, 0.08, x.shape), 0, 1).astype(np.float32)
    light, heavy = measure_visibility(x, faint), measure_visibility(x, strong)
    assert heavy.jod < light.jod - 0.5 and heavy.jod < 9.5
    assert heavy.ssimulacra2 < light.ssimulacra2 - 30
    assert heavy.phrase == "clearly visible" and light.phrase != "clearly visible"
    assert heavy.psnr is not None and heavy.psnr < 25


def test_phrases_follow_the_thresholds():
    assert phrase_for(10, 100) == "no visible difference"
    assert phrase_for(9.9, 70) == "barely visible side by side"  # SSIMULACRA2 below 80
    assert phrase_for(9.6, 95) == "barely visible side by side"
    assert phrase_for(9.0, 95) == "visible side by side"
    assert phrase_for(7.98, -29) == "clearly visible"  # Mist ε16 on the shared Monet
    assert [p[0] for p in PHRASES][-1] == "clearly visible"


@pytest.mark.parametrize("shape", [(4000, 6000), (2000, 2000), (1448, 1448), (3, 5_000_000), (10, 10)])
def test_tiles_cover_the_image_within_the_size(shape):
    h, w = shape
    parts = tiles(h, w)
    assert all((r.stop - r.start) * (c.stop - c.start) <= TILE_PIXELS for r, c in parts)
    assert sum((r.stop - r.start) * (c.stop - c.start) for r, c in parts) == h * w


def test_the_worst_tile_counts():
    x = painting(64)
    changed = x.copy()
    changed[:, 32:] = np.clip(changed[:, 32:] + np.random.default_rng(1).normal(0, 0.08, (64, 32, 3)), 0, 1)
    whole = measure_visibility(x, changed)
    tiled = measure_visibility(x, changed, tile_pixels=64 * 32)
    left = measure_visibility(x[:, :32], changed[:, :32])
    right = measure_visibility(x[:, 32:], changed[:, 32:])
    assert whole.tiles == 1 and tiled.tiles == 2
    assert (tiled.jod, tiled.ssimulacra2) == (
        min(left.jod, right.jod),
        min(left.ssimulacra2, right.ssimulacra2),
    )
    assert left.phrase == "no visible difference" and tiled.jod == right.jod


def test_a_picture_too_small_to_judge_is_refused_in_one_sentence():
    x = painting(16)[:4]
    with pytest.raises(ValueError, match="16×4 picture is too small to judge by eye"):
        measure_visibility(x, x)
