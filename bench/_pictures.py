"""Pictures where a cloak shows most: smooth gradients and flat colour.

Photos with skies and smooth backgrounds from scikit-image (``astronaut``, ``coffee``, ``chelsea``,
``rocket``) and flat-colour illustrations drawn here, the same every time (no randomness): a
sunrise with a smooth sky and rays, a cel-shaded ball, line art, a flat poster. Written once as
PNG files, so every bench reads pictures from paths; ``enlarged`` makes the 4 and 24 MP copies.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _common import spread, vangogh_images

PICTURES = Path(tempfile.gettempdir()) / "sfumato-bench-pictures"
SIDE = 512
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _vertical_gradient(size: int, top: tuple, bottom: tuple, power: float = 1.0) -> Image.Image:
    t = (np.linspace(0, 1, size) ** power)[:, None, None]
    rows = (1 - t) * np.array(top, dtype=np.float64) + t * np.array(bottom, dtype=np.float64)
    return Image.fromarray(np.round(np.broadcast_to(rows, (size, size, 3))).astype(np.uint8), "RGB")


def sunrise(size: int) -> Image.Image:
    """A smooth sky from deep blue to orange, a sun with soft rays, two flat hills."""
    sky = _vertical_gradient(size, (28, 40, 110), (250, 170, 90), power=1.6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = size * 0.5, size * 0.62
    angle = np.arctan2(yy - cy, xx - cx)
    radius = np.hypot(xx - cx, yy - cy)
    rays = (0.5 + 0.5 * np.cos(angle * 14)) * np.exp(-radius / (size * 0.35)) * 40
    pixels = np.asarray(sky, dtype=np.float64) + rays[..., None] * np.array([1.0, 0.8, 0.4])
    image = Image.fromarray(np.round(np.clip(pixels, 0, 255)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    r = size * 0.09
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 236, 180))
    draw.polygon(
        [(0, size * 0.7), (size * 0.45, size * 0.6), (size, size * 0.75), (size, size), (0, size)],
        fill=(70, 60, 90),
    )
    draw.polygon(
        [(0, size * 0.85), (size * 0.6, size * 0.74), (size, size * 0.88), (size, size), (0, size)],
        fill=(40, 35, 60),
    )
    return image


def cel_ball(size: int) -> Image.Image:
    """A ball in three flat tones with a black outline and a cast shadow, on a flat wall."""
    image = Image.new("RGB", (size, size), (236, 226, 205))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size * 0.72, size, size), fill=(190, 170, 140))
    draw.ellipse((size * 0.3, size * 0.74, size * 0.8, size * 0.82), fill=(150, 130, 105))
    box = (size * 0.25, size * 0.22, size * 0.75, size * 0.72)
    draw.ellipse(box, fill=(200, 60, 70), outline=(20, 20, 20), width=max(2, size // 128))
    draw.chord((size * 0.27, size * 0.24, size * 0.73, size * 0.70), 20, 160, fill=(140, 35, 50))
    draw.ellipse((size * 0.35, size * 0.3, size * 0.47, size * 0.4), fill=(255, 200, 200))
    return image


def line_art(size: int) -> Image.Image:
    """Black ink on white paper: a house, a tree, hatched hills; one flat fill."""
    image = Image.new("RGB", (size, size), (252, 251, 247))
    draw = ImageDraw.Draw(image)
    ink, width = (15, 15, 20), max(2, size // 170)
    s = size / 512
    draw.rectangle((120 * s, 250 * s, 300 * s, 400 * s), fill=(250, 220, 120), outline=ink, width=width)
    draw.line([(100 * s, 260 * s), (210 * s, 150 * s), (320 * s, 260 * s)], fill=ink, width=width)
    draw.rectangle((190 * s, 320 * s, 230 * s, 400 * s), outline=ink, width=width)
    draw.ellipse((350 * s, 150 * s, 470 * s, 280 * s), outline=ink, width=width)
    draw.line([(410 * s, 280 * s), (410 * s, 400 * s)], fill=ink, width=width)
    for i in range(12):
        x = i * 44 * s
        draw.line([(x, 430 * s), (x + 30 * s, 470 * s)], fill=ink, width=max(1, width // 2))
    draw.arc((0, 380 * s, size, 520 * s), 180, 360, fill=ink, width=width)
    return image


def flat_poster(size: int) -> Image.Image:
    """Flat shapes over a smooth horizontal gradient, as a vector poster."""
    t = np.linspace(0, 1, size)[None, :, None]
    rows = (1 - t) * np.array([255, 214, 170]) + t * np.array([120, 190, 220])
    image = Image.fromarray(np.round(np.broadcast_to(rows, (size, size, 3))).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    s = size / 512
    draw.rectangle((60 * s, 300 * s, 200 * s, 460 * s), fill=(40, 80, 120))
    draw.polygon([(230 * s, 460 * s), (330 * s, 200 * s), (430 * s, 460 * s)], fill=(230, 90, 60))
    draw.ellipse((330 * s, 60 * s, 450 * s, 180 * s), fill=(250, 240, 210))
    for k in range(5):
        y = (80 + 30 * k) * s
        draw.line(
            [(40 * s, y), (40 * s + 200 * s * math.cos(k / 6), y)], fill=(255, 255, 255), width=int(6 * s)
        )
    return image


ILLUSTRATIONS: dict[str, Callable[[int], Image.Image]] = {
    "sunrise": sunrise,
    "cel-ball": cel_ball,
    "line-art": line_art,
    "flat-poster": flat_poster,
}


def _drawn(draw: Callable[[int], Image.Image], size: int) -> Image.Image:
    """Drawn at twice the size and reduced: edges antialiased as an illustrator's export is."""
    return draw(2 * size).resize((size, size), Image.Resampling.LANCZOS)


def flat_pictures(folder: Path = PICTURES) -> list[Path]:
    """The photos and the illustrations as PNG files in ``folder`` (written on first use)."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PHOTOS:
        path = folder / f"{name}.png"
        if not path.is_file():
            Image.fromarray(getattr(data, name)()).convert("RGB").save(path)
        paths.append(path)
    for name, draw in ILLUSTRATIONS.items():
        path = folder / f"{name}.png"
        if not path.is_file():
            _drawn(draw, SIDE).save(path)
        paths.append(path)
    return paths


def enlarged(paths: list[Path], megapixels: int, folder: Path = PICTURES) -> list[Path]:
    """Lanczos enlargements of ``paths`` to about ``megapixels`` MP, keeping the aspect ratio."""
    out = folder / f"{megapixels}mp"
    out.mkdir(parents=True, exist_ok=True)
    found = []
    for path in paths:
        target = out / f"{path.parent.name}-{path.stem}.png"
        if not target.is_file():
            image = Image.open(path).convert("RGB")
            scale = math.sqrt(megapixels * 1e6 / (image.width * image.height))
            image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
            ).save(target)
        found.append(target)
    return found


# The benches' picture sets: the shared paintings (in ``spread`` order), and the photos with skies
# and the flat-colour drawings above.
PICTURE_SETS: dict[str, Callable[[], list[Path]]] = {
    "vangogh": lambda: spread(vangogh_images()),
    "flat": flat_pictures,
}
