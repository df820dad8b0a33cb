"""Purifiers: each keeps the picture's shape and range, gives the same result twice and actually
changes a cloaked-looking image; AdverseCleaner's chain washes out fine noise but keeps edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from enginekit import artwork, one_thread  # noqa: F401 (one_thread: an autouse fixture)
from sfumato.verify.purifiers import PURIFIERS, VAE_PURIFIER, adverse_cleaner, purifiers_for


def tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None]


def noisy_art(size: int = 48, amount: float = 6 / 255) -> torch.Tensor:
    """A painting with a ±``amount`` sign pattern on every sample: what an adversarial cloak looks like."""
    x = tensor(np.asarray(artwork(size), dtype=np.float32) / 255)
    signs = torch.from_numpy(np.random.default_rng(5).choice([-1.0, 1.0], size=x.shape).astype(np.float32))
    return (torch.round((x + amount * signs).clamp(0, 1) * 255) / 255).float()


@pytest.mark.parametrize("name", list(PURIFIERS))
def test_purifier_keeps_shape_range_and_is_deterministic(name):
    x = noisy_art()
    first, second = PURIFIERS[name](x), PURIFIERS[name](x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    assert torch.equal(first, torch.round(first * 255) / 255)  # a saved 8-bit picture
    assert torch.equal(first, second)
    assert float((first - x).abs().mean()) > 1 / 255
    assert PURIFIERS[name].description  # the docstring's first paragraph names its parameters


def high_frequency_energy(x: torch.Tensor) -> float:
    """Energy of the image minus its 3×3 box blur."""
    return float((x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)).pow(2).mean())


def test_adverse_cleaner_removes_fine_noise_and_keeps_edges():
    clean = torch.full((1, 3, 40, 40), 0.3)
    clean[..., 20:] = 0.7  # one sharp vertical edge
    rng = np.random.default_rng(2)
    noise = torch.from_numpy(rng.choice([-4.0, 4.0], size=clean.shape).astype(np.float32)) / 255
    dirty = torch.round((clean + noise) * 255) / 255
    cleaned = adverse_cleaner(dirty)
    assert high_frequency_energy(cleaned[..., 2:-2, 2:17]) < 0.1 * high_frequency_energy(
        dirty[..., 2:-2, 2:17]
    )
    step = cleaned[..., 5:-5, 21:24].mean() - cleaned[..., 5:-5, 16:19].mean()
    assert float(step) > 0.9 * 0.4  # the edge keeps its contrast right next to it
    assert float((cleaned - clean).abs().mean()) < 0.5 * float((dirty - clean).abs().mean())


def test_adverse_cleaner_matches_opencv_guided_filter():
    """The guided filter is kornia's; OpenCV's contrib one (AdverseCleaner's) agrees."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "ximgproc"):
        pytest.skip("opencv-contrib is not installed")
    x = noisy_art(40)
    pixels = np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    y = pixels.copy()
    for _ in range(64):
        y = cv2.bilateralFilter(y, 5, 8, 8)
    for _ in range(4):
        y = cv2.ximgproc.guidedFilter(pixels, y, 4, 16)
    ours = np.round(adverse_cleaner(x)[0].permute(1, 2, 0).numpy() * 255)
    diff = np.abs(ours - y)
    assert diff[6:-6, 6:-6].max() <= 1 and diff.mean() < 0.25  # within one 8-bit step (rounding)


class RoundTripStub(torch.nn.Module):
    """An 'autoencoder' that keeps a 4× smaller picture."""

    spec = "stub@somewhere"
    has_decoder = True

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, 4, ceil_mode=True)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.interpolate(latents, scale_factor=4, mode="bilinear") + 0.001


def test_vae_round_trip_joins_only_with_a_decoder():
    assert VAE_PURIFIER not in purifiers_for()
    found = purifiers_for(RoundTripStub())
    assert list(found) == [*PURIFIERS, VAE_PURIFIER]
    x = noisy_art(42)  # not a multiple of the latent's stride: cropped back to size
    y = found[VAE_PURIFIER](x)
    assert y.shape == x.shape and torch.equal(y, torch.round(y * 255) / 255)
    assert high_frequency_energy(y) < 0.5 * high_frequency_energy(x)
    with pytest.raises(ValueError, match="no decoder"):
        purifiers_for(type("NoDecoder", (), {"spec": "x", "has_decoder": False})())
