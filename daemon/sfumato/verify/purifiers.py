"""What someone who wants to train on a cloaked picture does first: wash the cloak out.

Each purifier takes images B×3×H×W in [0, 1] and returns the same shape and range, on the
8-bit grid (a purified picture is a saved file). Every one is deterministic: the noise is drawn
from a fixed seed, so a check gives the same figures twice. The classical filters are OpenCV's
(bilateral, non-local means), as the public tools run them; the guided filter is kornia's, so
the OpenCV without contrib modules is enough.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from kornia.filters import guided_blur
from PIL import Image

from sfumato.engine.image_ops import jpeg75

NOISE_SEED = 19


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """One image (3×H×W in [0, 1]) as H×W×3 8-bit samples."""
    return np.round(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


def _from_uint8(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1).to(like.device, like.dtype)


def _per_image(images: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """``fn`` on each image of the batch as 8-bit H×W×3 pixels."""
    return torch.stack([_from_uint8(fn(_to_uint8(image)), images) for image in images])


def _quantised(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images.clamp(0, 1) * 255) / 255


def _noisy(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian noise of std ``sigma`` from a fixed seed (the same noise for the same size)."""
    generator = torch.Generator().manual_seed(NOISE_SEED)
    noise = torch.randn(images.shape, generator=generator, dtype=torch.float32)
    return _quantised(images + sigma * noise.to(images.device, images.dtype))


def _jpeg(images: torch.Tensor) -> torch.Tensor:
    return torch.cat([jpeg75(image[None]) for image in images])


def adverse_cleaner(images: torch.Tensor) -> torch.Tensor:
    """AdverseCleaner's chain (github.com/lllyasviel/AdverseCleaner): 64 passes of a bilateral
    filter (diameter 5, σ colour 8, σ space 8, on 8-bit values, rounded after each pass as OpenCV
    does), then 4 passes of a guided filter guided by the input (radius 4, ε 16 in squared 8-bit
    units), each pass filtering the previous one's output."""
    import cv2

    def bilateral(pixels: np.ndarray) -> np.ndarray:
        for _ in range(64):
            pixels = cv2.bilateralFilter(pixels, 5, 8, 8)
        return pixels

    smooth = _per_image(images, bilateral)
    guide = _quantised(images).float()
    out = smooth.float()
    for _ in range(4):
        out = _quantised(guided_blur(guide, out, 9, 16 / 255**2))
    return out.to(images.dtype)


def noise_jpeg(images: torch.Tensor) -> torch.Tensor:
    """Gaussian noise σ 0.05 (seeded), then JPEG quality 75: drown the cloak, let the codec
    smooth the noise away."""
    return _jpeg(_noisy(images, 0.05))


def rescale_jpeg(images: torch.Tensor) -> torch.Tensor:
    """Half-size area downscale, Lanczos upscale back to the original size, JPEG quality 75."""

    def there_and_back(pixels: np.ndarray) -> np.ndarray:
        picture = Image.fromarray(pixels, "RGB")
        w, h = picture.size
        small = picture.reduce(2) if w >= 2 and h >= 2 else picture
        return np.asarray(small.resize((w, h), Image.Resampling.LANCZOS))

    return _jpeg(_per_image(images, there_and_back))


def noise_nlm(images: torch.Tensor) -> torch.Tensor:
    """A model-free stand-in for noisy upscaling (noise, then a denoiser that invents clean
    detail): Gaussian noise σ 0.1 (seeded), then OpenCV's non-local means on colour images
    (h 20 on luminance and colour, 7-px patches, 21-px search window)."""
    import cv2

    def denoise(pixels: np.ndarray) -> np.ndarray:
        return cv2.fastNlMeansDenoisingColored(pixels, None, 20, 20, 7, 21)

    return _per_image(_noisy(images, 0.1), denoise)


def vae_round_trip(encoder) -> Callable[[torch.Tensor], torch.Tensor]:
    """Through an autoencoder's latent and back (``tae:flux2``: TAEF2), as a generator's training
    sees the picture; the encoder must have a decoder."""
    if not encoder.has_decoder:
        raise ValueError(f"{encoder.spec} has no decoder, so it cannot purify by a round trip")

    def round_trip(images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        with torch.no_grad():
            decoded = encoder.decode(encoder.embed(images))[..., :h, :w]
        return _quantised(decoded.float()).to(images.dtype)

    round_trip.__doc__ = f"Encoded and decoded by {encoder.spec.split('@')[0]}."
    return round_trip


@dataclass(frozen=True)
class Purifier:
    """A named purifier; ``run`` maps B×3×H×W in [0, 1] to the same."""

    name: str
    run: Callable[[torch.Tensor], torch.Tensor]

    @property
    def description(self) -> str:
        return " ".join((self.run.__doc__ or self.name).split("\n\n")[0].split())

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images)


PURIFIERS: dict[str, Purifier] = {
    p.name: p
    for p in (
        Purifier("adverse-cleaner", adverse_cleaner),
        Purifier("noise+jpeg", noise_jpeg),
        Purifier("rescale+jpeg", rescale_jpeg),
        Purifier("noise+nlm", noise_nlm),
    )
}
VAE_PURIFIER = "vae-round-trip"


def purifiers_for(vae=None) -> dict[str, Purifier]:
    """The classical purifiers, plus the autoencoder round trip when ``vae`` (an encoder with a
    decoder) is given."""
    found = dict(PURIFIERS)
    if vae is not None:
        found[VAE_PURIFIER] = Purifier(VAE_PURIFIER, vae_round_trip(vae))
    return found
