"""The one interface every feature extractor offers the optimiser."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from sfumato.engine.image_ops import resize_antialiased
from sfumato.errors import EncoderError


class Encoder(nn.Module):
    """An image batch in [0, 1] (B×3×H×W, any H, W) in; an embedding out.

    Subclasses set ``spec`` (the string that names them), ``input_size`` and the model's own
    ``mean``/``std`` and implement :meth:`features` on preprocessed input. ``spatial`` encoders
    (latent autoencoders) return B×C×h×w maps that must be compared between aligned views.
    """

    spec: str = ""
    input_size: tuple[int, int] = (224, 224)
    spatial: bool = False
    # Convolutional with global pooling: any input size works, so the search can show it views at
    # several resolutions (see ``View.scale``); a ViT's position embeddings fix its size.
    resizable: bool = False
    supports_text: bool = False
    supports_classes: bool = False

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def size_for(self, scale: float) -> tuple[int, int]:
        """The input size this encoder takes a view of resolution ``scale`` at (1: its own)."""
        if not self.resizable or scale == 1:
            return self.input_size
        return tuple(max(32, round(side * scale / 8) * 8) for side in self.input_size)

    def preprocess(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        images = resize_antialiased(images, size or self.input_size)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Images in [0, 1] → embedding (B×D, or B×C×h×w for spatial encoders).

        ``size``: the input size to resize to, from :meth:`size_for`; the model's own by default.
        """
        return self.features(self.preprocess(images, size))

    def embed_with_maps(
        self, images: torch.Tensor, size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embedding plus a mid-level feature map (B×C×h×w), where the encoder exposes one.

        Mid-level features carry texture and style and are shared across models far more than
        final embeddings, so pulling them toward the target's transfers better.
        """
        return self.embed(images, size), None

    def aligned_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """For spatial encoders: the maps a latent term pulls toward the target's, finest first.

        The latent alone by default; an encoder may add inner maps, which other networks share
        more than they share the latent (the search's pull on them transfers further).
        """
        return [self.embed(images)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    @contextlib.contextmanager
    def varied(self, generator: torch.Generator) -> Iterator[None]:
        """Inside, each forward pass is a randomly varied copy of the model, drawn from ``generator``.

        A new variation per step is an ensemble of nearby models for the price of one, which
        transfers to unseen models better. Encoders without a variation stay as they are.
        """
        yield

    def embed_concepts(self, names: Sequence[str]) -> torch.Tensor:
        """One embedding per concept name (text prompt or class name), comparable to :meth:`embed`."""
        raise EncoderError(
            f"encoder {self.spec} cannot embed text or class names; give a built-in style, "
            f"a folder of reference images, or add an encoder with a text tower (openclip:...)"
        )

    def concept_vocabulary(self) -> Sequence[str] | None:
        """Names :meth:`embed_concepts` accepts when it is closed (ImageNet classes); None if open."""
        return None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latent → image in [0, 1], for encoders that have a decoder (``has_decoder``)."""
        raise EncoderError(f"encoder {self.spec} has no decoder")

    @property
    def has_decoder(self) -> bool:
        return False
