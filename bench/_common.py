"""Shared bits of the benchmarks: the data, command line, cloak loop, held-out evaluation
transforms and features, table printing. torch is imported only inside functions, after the
environment below is set."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see sfumato/__init__.py
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
SHARED = ROOT.parent / "shared"
VANGOGH = SHARED / "data" / "art" / "vangogh"
# The transfer benches optimise against two EfficientNet-Lite models and judge with a third.
SURROGATES = ("effnet-lite:0", "effnet-lite:1")
HELD_OUT = "effnet-lite:2"


def bench_parser(doc: str, *, threads: int = 2, **extra: str) -> argparse.ArgumentParser:
    """``--limit``, then ``extra`` text options (name=default), then the cloak's settings."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--start", type=int, default=0, help="skip this many images (to split a run)")
    for name, default in extra.items():
        parser.add_argument(f"--{name}", default=default)
    parser.add_argument("--intensity", default="default")
    parser.add_argument("--quality", default="default")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=threads)
    return parser


def bench_options(args: argparse.Namespace, **fields: Any):
    """The cloak request the command line asks for, with ``fields`` (style, encoders...) set; a
    poison given as ``CONCEPT:TARGET`` text is parsed."""
    from sfumato.options import CloakRequest
    from sfumato.specs import parse_poison

    chosen = dict(intensity=args.intensity, quality=args.quality, steps=args.steps, threads=args.threads)
    if isinstance(fields.get("poison"), str):
        fields["poison"] = parse_poison(fields["poison"])
    return CloakRequest(**{**chosen, **fields})


def transfer_encoders(threads: int) -> tuple[list, Any]:
    """The surrogate ensemble and the held-out encoder, on the CPU with ``threads`` threads."""
    import torch

    from sfumato.engine.cloak import load_encoders

    torch.set_num_threads(threads)
    surrogates = load_encoders(list(SURROGATES), torch.device("cpu"))
    (held_out,) = load_encoders([HELD_OUT], torch.device("cpu"))
    return surrogates, held_out


def cloak_each(
    paths: Iterable[Path], options, encoders: Sequence
) -> Iterator[tuple[Path, Image.Image, Any, float]]:
    """Each image opened and cloaked: its path, the original, the result and the seconds it took."""
    from sfumato.engine.cloak import cloak_image

    for path in paths:
        original = Image.open(path).convert("RGB")
        started = time.perf_counter()
        result = cloak_image(original, options, encoders=encoders)
        yield path, original, result, time.perf_counter() - started


def saved_each(
    paths: Iterable[Path], folder: Path
) -> Iterator[tuple[Path, Image.Image, Image.Image, dict, float]]:
    """Like ``cloak_each``, for cloaks an earlier run saved in ``folder`` (no seconds): path,
    original, saved cloak, its visual change (PSNR, SSIM...), NaN."""
    from sfumato.verify.figures import visual_change

    for path in paths:
        saved = folder / f"{path.stem}.png"
        if not saved.is_file():
            raise SystemExit(
                f"{saved}: no saved cloak of {path.name} (an earlier run with --save keeps them)"
            )
        original, image = Image.open(path).convert("RGB"), Image.open(saved).convert("RGB")
        yield path, original, image, visual_change(to_array(original), to_array(image)), float("nan")


def cloaks(
    paths: Iterable[Path],
    options,
    encoders: Sequence,
    *,
    save: Path | None = None,
    measure: Path | None = None,
) -> Iterator[tuple[Path, Image.Image, Image.Image, dict, float]]:
    """Each image cloaked (and written to ``save`` when given), or read back from ``measure``:
    path, original, cloak, report (PSNR, SSIM...), seconds (NaN when measured)."""
    if measure is not None:
        yield from saved_each(paths, measure)
        return
    for path, original, result, seconds in cloak_each(paths, options, encoders):
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            result.image.save(save / f"{path.stem}.png")
        yield path, original, result.image, result.report.to_json(), seconds


def add_saving(parser: argparse.ArgumentParser) -> None:
    """``--save DIR`` to keep the cloaks, ``--measure DIR`` to measure the ones kept instead."""
    parser.add_argument("--save", type=Path, default=None, help="keep the cloaks in this folder")
    parser.add_argument("--measure", type=Path, default=None, help="measure the cloaks saved in this folder")


def vangogh_images(limit: int | None = None, start: int = 0) -> list[Path]:
    files = sorted(VANGOGH.glob("*.png"))
    if not files:
        raise SystemExit(f"no images in {VANGOGH}: the benchmarks need ../shared beside the checkout")
    files = files[start:]
    return files[:limit] if limit else files


def spread(files: list[Path], stride: int = 5) -> list[Path]:
    """Interleave the sorted files (0, 5, 10, ..., 1, 6, ...) so any prefix mixes every series."""
    return [f for start in range(stride) for f in files[start::stride]]


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    """Re-saved as JPEG: the check's own op (Pillow's codec), on an 8-bit picture."""
    from sfumato.engine.image_ops import jpeg as resave

    return to_image(resave(as_tensor(image), quality))


def half_size(image: Image.Image) -> Image.Image:
    """Pillow's Lanczos, not the check's half_size (antialiased bilinear), so the style table's
    figures stay comparable with those measured before."""
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def to_image(x: torch.Tensor) -> Image.Image:
    """A 1×3×H×W batch in [0, 1] as an 8-bit picture."""
    pixels = np.round(x[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def as_tensor(image: Image.Image) -> torch.Tensor:
    import torch

    return torch.from_numpy(to_array(image)).permute(2, 0, 1)[None]


def features(encoder, image: Image.Image | torch.Tensor) -> torch.Tensor:
    """The encoder's unit pooled features of an image (a picture, or a 1×3×H×W batch)."""
    import torch

    from sfumato.engine.objectives import unit

    x = as_tensor(image) if isinstance(image, Image.Image) else image
    with torch.no_grad():
        return unit(encoder.embed(x))


def mean(values: Iterable[float], digits: int) -> str:
    return f"{statistics.mean(values):.{digits}f}"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, ready to paste into docs/benchmarks.md."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def print_summary(headers: list[str], row: list[str]) -> None:
    """A blank line after the per-image lines, then the one-row table of means."""
    print()
    print_table(headers, [row])
