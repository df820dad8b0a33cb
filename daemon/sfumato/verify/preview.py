"""One picture to look at instead of figures to read: original | cloaked | change, captioned.

Where an encoder has a decoder (``tae:flux2``), two more panels show the image decoded from the
original's latent and from the cloak's: the picture a generator trained on this file learns from.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sfumato.engine.cloak import working_copy
from sfumato.engine.encoders import Encoder
from sfumato.fileops import atomic_write_bytes

PANEL_SIDE = 384  # the longer side of each panel at most, so a preview stays about a megabyte
MIN_SIDE = 256  # tiny images are enlarged (nearest neighbour: every pixel stays visible)
GAP = 12
CAPTION = 46  # two lines of caption above each panel
FONT_SIZE = 16
LINE = 22
BACKGROUND = (246, 244, 240)
INK = (30, 30, 30)
# change heat map: black (unchanged) -> purple -> orange -> pale yellow (the largest change)
HEAT = np.array([[0, 0, 0], [90, 20, 120], [230, 90, 40], [255, 240, 160]], dtype=np.float32)


@dataclass(frozen=True)
class Panel:
    image: Image.Image
    caption: str


def panel_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of every panel: at most PANEL_SIDE, small images blown up to MIN_SIDE."""
    longer = max(height, width)
    scale = PANEL_SIDE / longer if longer > PANEL_SIDE else max(1.0, MIN_SIDE / longer)
    return max(1, round(width * scale)), max(1, round(height * scale))


def panel_boxes(size: tuple[int, int], count: int) -> list[tuple[int, int, int, int]]:
    """Where each panel's picture lies in the preview, left to right (PIL boxes)."""
    w, h = size
    return [
        (GAP + i * (w + GAP), GAP + CAPTION, GAP + i * (w + GAP) + w, GAP + CAPTION + h) for i in range(count)
    ]


def _picture(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    image = Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")
    return _resized(image, size, Image.LANCZOS)


def _resized(image: Image.Image, size: tuple[int, int], reduce: int) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, reduce if size[0] < image.size[0] else Image.NEAREST)


def change_map(original: np.ndarray, cloaked: np.ndarray, size: tuple[int, int]) -> tuple[Image.Image, int]:
    """Heat map of the largest channel change per pixel, amplified so the largest one is bright;
    averaged over each panel pixel's area, so fine noise is not lost in the reduction."""
    change = np.abs(cloaked.astype(np.float32) - original.astype(np.float32)).max(axis=-1)
    peak = float(change.max())
    gain = max(1, min(64, math.floor(0.9 / peak))) if peak > 0 else 1
    small = Image.fromarray(np.clip(change * gain, 0, 1).astype(np.float32), "F")
    small = _resized(small, size, Image.BOX)
    level = np.clip(np.asarray(small, dtype=np.float32), 0, 1) * (len(HEAT) - 1)
    low = np.floor(level).astype(int).clip(0, len(HEAT) - 2)
    frac = (level - low)[..., None]
    rgb = HEAT[low] * (1 - frac) + HEAT[low + 1] * frac
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB"), gain


def decoded_pair(
    encoder: Encoder, original: np.ndarray, cloaked: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both images through the encoder's latent and back, at panel resolution."""
    device = next(iter(encoder.buffers())).device
    out = []
    for pixels in (original, cloaked):
        x = working_copy(pixels, PANEL_SIDE, device)
        with torch.no_grad():
            y = encoder.decode(encoder.embed(x))[..., : x.shape[-2], : x.shape[-1]]
        out.append(y[0].permute(1, 2, 0).float().cpu().numpy())
    return out[0], out[1]


def _word_lines(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """As many words per line as fit ``width`` (a word wider than that gets a line of its own)."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line]


def _wrap(draw: ImageDraw.ImageDraw, parts: Sequence[str], font, width: int) -> list[str]:
    """Phrases joined by dots, broken between phrases, or between words of a phrase too long."""
    lines, line = [], ""
    for part in parts:
        trial = f"{line}  ·  {part}" if line else part
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        *full, line = _word_lines(draw, part, font, width)
        lines += full
    return [*lines, line] if line else lines


def _caption_lines(draw: ImageDraw.ImageDraw, caption: str, font, width: int) -> list[str]:
    """At most two lines that fit ``width``; words that do not fit are cut with an ellipsis."""
    lines = _word_lines(draw, caption, font, width)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    out = []
    for text in lines:
        while draw.textlength(text, font=font) > width and len(text) > 2:
            text = text[:-4].rstrip() + "..."
        out.append(text)
    return out


def render_preview(
    original: np.ndarray,
    cloaked: np.ndarray,
    footer: Sequence[str],
    decoded: tuple[np.ndarray, np.ndarray] | None = None,
    decoder_name: str = "",
) -> Image.Image:
    """The preview (pixels H×W×3 in [0, 1]); ``footer``: the key figures, as short phrases."""
    size = panel_size(*original.shape[:2])
    heat, gain = change_map(original, cloaked, size)
    panels = [
        Panel(_picture(original, size), "original"),
        Panel(_picture(cloaked, size), "cloaked"),
        Panel(heat, f"change x{gain} (black = none)"),
    ]
    if decoded is not None:
        via = decoder_name or "encoder's"
        panels += [
            Panel(_picture(decoded[0], size), "original, as a generator sees it"),
            Panel(_picture(decoded[1], size), "cloaked, as a generator sees it"),
        ]
        footer = [*footer, f"last two panels: decoded from the {via} latent"]
    font = ImageFont.load_default(size=FONT_SIZE)
    boxes = panel_boxes(size, len(panels))
    width = boxes[-1][2] + GAP
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(scratch, footer, font, width - 2 * GAP)
    height = boxes[0][3] + GAP + LINE * len(lines) + (GAP if lines else 0)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for panel, box in zip(panels, boxes, strict=True):
        canvas.paste(panel.image, box[:2])
        for row, text in enumerate(_caption_lines(draw, panel.caption, font, size[0])):
            draw.text((box[0], GAP + row * (LINE - 2)), text, fill=INK, font=font)
    for i, line in enumerate(lines):
        draw.text((GAP, boxes[0][3] + GAP + i * LINE), line, fill=INK, font=font)
    return canvas


def footer_phrases(figures: dict, target: str | None = None, verdict: str | None = None) -> list[str]:
    """The key figures in words: visual change first, then what a model sees."""
    psnr = figures.get("psnr")
    phrases = [
        "identical" if psnr is None else f"PSNR {psnr:.1f} dB",
        f"SSIM {figures['ssim']:.3f}",
        f"largest change {figures['max_change']:.0f}/255",
    ]
    if figures.get("changed_share") is not None:
        phrases.append(f"{figures['changed_share'] * 100:.0f}% of pixels changed")
    seen = figures.get("visibility")
    if seen and "phrase" in seen:
        phrases.append(f"{seen['phrase']} (JOD {seen['jod']:.2f}, SSIMULACRA2 {seen['ssimulacra2']:.0f})")
    if target:
        phrases.append(f"target {target}")
    if verdict:
        phrases.append(verdict)
    return phrases


def write_preview(image: Image.Image, path: Path) -> Path:
    """Save as PNG crash-safely (temp name, fsync, rename)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def build_preview(
    original: np.ndarray, cloaked: np.ndarray, footer: Sequence[str], encoders: Sequence[Encoder] = ()
) -> Image.Image:
    """The preview, with decoded panels from the first of ``encoders`` that has a decoder."""
    decoder = next((e for e in encoders if e.has_decoder), None)
    if decoder is None:
        return render_preview(original, cloaked, footer)
    decoded = decoded_pair(decoder, original, cloaked)
    return render_preview(original, cloaked, footer, decoded, decoder.spec.split("@")[0])


def preview_for_files(
    original: Path, cloaked: Path, report: dict, folder: Path, encoders: Sequence[Encoder] = ()
) -> Path:
    """``sfumato cloak --preview``: ``<folder>/<cloaked stem>.preview.png`` from the two files and
    the cloak's report (its target and quick-check verdict go into the footer)."""
    from sfumato.images import read_artwork
    from sfumato.verify.figures import visual_change

    before, after = read_artwork(Path(original)).rgb, read_artwork(Path(cloaked)).rgb
    figures = visual_change(before, after)
    check = report.get("check") or {}
    verdict = None
    if check.get("encoder"):  # the quick check ran
        verdict = f"check {check['encoder']}: shift {check['shift']:.3f} " + (
            "(passed)" if check["passed"] else f"below {check['threshold']:g}: INCOMPLETE"
        )
        if check.get("latent"):  # latent members: the held-out latent judge had its say too
            verdict = (
                f"check {check['encoder']}: shift {check['shift']:.3f}, latent judge "
                f"{check['latent']['shift']:.3f} " + ("(passed)" if check["passed"] else "INCOMPLETE")
            )
    elif check:  # it failed without a model: nothing changed
        verdict = "INCOMPLETE: nothing changed"
    image = build_preview(before, after, footer_phrases(figures, report.get("target"), verdict), encoders)
    return write_preview(image, Path(folder) / f"{Path(cloaked).stem}.preview.png")
