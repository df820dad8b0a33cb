"""Shared bits of the benchmarks: the data, held-out evaluation transforms, table printing."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see sfumato/__init__.py
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
SHARED = ROOT.parent / "shared"
VANGOGH = SHARED / "data" / "art" / "vangogh"


def vangogh_images(limit: int | None = None) -> list[Path]:
    files = sorted(VANGOGH.glob("*.png"))
    if not files:
        raise SystemExit(f"no images in {VANGOGH}: the benchmarks need ../shared beside the checkout")
    return files[:limit] if limit else files


def spread(files: list[Path], stride: int = 5) -> list[Path]:
    """Interleave the sorted files (0, 5, 10, ..., 1, 6, ...) so any prefix mixes every series."""
    return [f for start in range(stride) for f in files[start::stride]]


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def half_size(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready to paste into README."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
