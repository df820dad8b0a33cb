"""The engine's SSIMULACRA2 gives the score of the ``ssimulacra2`` package, the judge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enginekit import artwork
from sfumato.engine.ssimulacra2 import Reference, ssimulacra2
from sfumato.verify.visibility import ssimulacra2 as package_score


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float() / 255


def changed(pixels: np.ndarray, amount: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, amount, pixels.shape[:2] + (1,)) + rng.normal(0, amount / 2, pixels.shape)
    return np.clip(pixels + noise, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize(
    ("height", "width", "amount"),
    [(96, 96, 4.0), (161, 97, 12.0), (45, 61, 2.0), (9, 300, 6.0), (300, 17, 30.0)],
)
def test_the_score_is_the_packages(height, width, amount):
    """Odd sizes too: every scale's edges and its 2×2 means over a last odd row or column."""
    original = np.asarray(artwork(max(height, width)))[:height, :width].copy()
    test = changed(original, amount, seed=height)
    expected = package_score(original, test)
    assert ssimulacra2(as_tensor(original), as_tensor(test)) == pytest.approx(expected, abs=0.05)
    in_double = ssimulacra2(as_tensor(original), as_tensor(test), torch.float64)
    assert in_double == pytest.approx(expected, abs=1e-4)


def test_a_reference_scores_many_candidates_as_it_would_each_alone():
    original = np.asarray(artwork(80))
    reference = Reference(as_tensor(original))
    for amount in (1.0, 8.0, 40.0):
        test = as_tensor(changed(original, amount, seed=int(amount)))
        assert reference.score(test) == pytest.approx(ssimulacra2(as_tensor(original), test), abs=1e-9)
    assert reference.score(as_tensor(original)) == 100.0
