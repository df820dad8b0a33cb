"""What happens to a posted picture: the re-encodings a check measures the cloak through.

Real codecs and resamplers (Pillow's JPEG, antialiased resizing), not the optimiser's
differentiable stand-ins, so a check cannot be fooled by the approximations the search used.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from PIL import Image

from sfumato.engine.encoders.base import resize_antialiased


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    return Image.fromarray(np.round(array * 255).astype(np.uint8), "RGB")


def _from_pil(image: Image.Image, like: torch.Tensor) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(like.device, like.dtype)


def identity(image: torch.Tensor) -> torch.Tensor:
    return image


def jpeg75(image: torch.Tensor) -> torch.Tensor:
    """Re-saved as JPEG at quality 75, as most sites do on upload."""
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, "JPEG", quality=75)
    return _from_pil(Image.open(io.BytesIO(buffer.getvalue())), image)


def half_size(image: torch.Tensor) -> torch.Tensor:
    """Scaled to half its size, as thumbnails and feeds do."""
    h, w = image.shape[-2:]
    return resize_antialiased(image, (max(8, h // 2), max(8, w // 2))).clamp(0, 1)


def blur(image: torch.Tensor) -> torch.Tensor:
    """A light Gaussian blur (σ = 1 px), a common first attempt at washing a cloak out."""
    return gaussian_blur2d(image, (5, 5), (1.0, 1.0), border_type="reflect").clamp(0, 1)


def screenshot(image: torch.Tensor) -> torch.Tensor:
    """Shown at 75 % in a browser, captured back at full size and saved as 8-bit pixels."""
    h, w = image.shape[-2:]
    shown = resize_antialiased(image, (max(8, round(h * 0.75)), max(8, round(w * 0.75))))
    captured = F.interpolate(shown, size=(h, w), mode="bicubic", align_corners=False)
    return torch.round(captured.clamp(0, 1) * 255) / 255


TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": identity,
    "jpeg75": jpeg75,
    "half-size": half_size,
    "blur": blur,
    "screenshot": screenshot,
}
