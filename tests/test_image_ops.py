"""Image operations: every op keeps its pixels when moved or reused (pinned figures), and the
registries the engine and the check name them by point at them."""

from __future__ import annotations

import pytest
import torch

from sfumato.engine.stylizers import STYLIZERS
from sfumato.engine.views import View, apply_view
from sfumato.verify.transforms import TRANSFORMS


def _picture() -> torch.Tensor:
    """1×3×48×64 in [0, 1]: seeded noise over a left-to-right ramp."""
    noise = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(7))
    return (noise + torch.linspace(0, 1, 64)[None, None, None]) / 2


def _fingerprint(image: torch.Tensor) -> tuple[float, float, tuple[int, ...]]:
    """Mean, a position-weighted sum (moves if any region changes) and the shape."""
    weights = torch.linspace(-1, 1, image.numel()).reshape(image.shape)
    return float(image.mean()), float((image * weights).sum()), tuple(image.shape)


# Taken from the ops before they moved into one module: same input, same pixels.
PINNED = {
    "pixelart": (0.494234, -4.225),
    "popart": (0.461299, -25.4525),
    "sketch": (0.823357, 7.188),
    "mosaic": (0.324147, 5.5425),
    "halftone": (0.248264, 12.1819),
    "none": (0.498688, -13.8543),
    "jpeg75": (0.49866, -12.7478),
    "half-size": (0.498589, -2.0302),
    "blur": (0.498492, -13.1383),
    "screenshot": (0.498646, -13.471),
}
FULL_VIEW = View(4, 6, 40, 52, 32, 40, flip=True, jpeg_quality=60.0, blur_sigma=0.8, sharpen=1.2)
PINNED_VIEWS = {
    View(**{**FULL_VIEW.__dict__, "noise_std": 0.02, "noise_seed": 5}): (0.499105, -11.7057, (1, 3, 32, 40)),
    View(0, 0, 48, 64, 24, 32): (0.498589, -2.0302, (1, 3, 24, 32)),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_stylizers_and_check_transforms_keep_their_pixels(name: str) -> None:
    op = STYLIZERS.get(name) or TRANSFORMS[name]
    mean, weighted, shape = _fingerprint(op(_picture()))
    expected_shape = (1, 3, 24, 32) if name == "half-size" else (1, 3, 48, 64)
    assert shape == expected_shape
    assert mean == pytest.approx(PINNED[name][0], abs=2e-6)
    assert weighted == pytest.approx(PINNED[name][1], abs=2e-3)


@pytest.mark.parametrize("view", list(PINNED_VIEWS), ids=["every-step", "resize-only"])
def test_views_keep_their_pixels(view: View) -> None:
    mean, weighted, shape = _fingerprint(apply_view(view, _picture()))
    expected = PINNED_VIEWS[view]
    assert shape == expected[2]
    assert mean == pytest.approx(expected[0], abs=2e-6)
    assert weighted == pytest.approx(expected[1], abs=2e-3)
