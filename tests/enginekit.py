"""Small real artwork for engine tests: crops of the shared Van Gogh paintings, or a drawn fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VANGOGH = SHARED / "data" / "art" / "vangogh"
TAEF2_DIR = SHARED / "models" / "taef2"
TINY_CLIP = "openclip:sfumato-tiny/random"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for a module that imports this fixture: on a shared two-core machine more
    only make every pass wait for the others."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def artwork(size: int = 96) -> Image.Image:
    """A textured painting at ``size`` px: a shared Van Gogh if present, else drawn strokes."""
    path = VANGOGH / "sunflowers-1888.png"
    if path.exists():
        return Image.open(path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(1)
    image = Image.new("RGB", (size, size), (70, 120, 160))
    draw = ImageDraw.Draw(image)
    for _ in range(200):
        x, y = rng.integers(0, size, 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.line((x, y, x + rng.integers(-9, 9), y + rng.integers(-9, 9)), fill=colour, width=2)
    return image


def half_flat(size: int = 96) -> Image.Image:
    """Left half one flat colour, right half textured: where the budget map must differ."""
    art = np.asarray(artwork(size)).copy()
    art[:, : size // 2] = (200, 180, 120)
    return Image.fromarray(art)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
