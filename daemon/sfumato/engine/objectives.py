"""What the optimiser minimises: move each encoder's view of the cloak toward its target.

The style loss of one encoder is the negative *projection shift*: how far, as a fraction of the
way from the original to the target, the cloaked image's unit embedding has moved. It is
scale-free, so every ensemble member counts the same whatever its feature norms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sfumato.engine.encoders.base import Encoder, resize_antialiased
from sfumato.engine.views import View, apply_view


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1).float(), dim=1)


def projection_shift(moved: torch.Tensor, origin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """((moved - origin)·(target - origin)) / |target - origin|², per row (unit-normalised inputs)."""
    d = target - origin
    return ((moved - origin) * d).sum(-1) / d.pow(2).sum(-1).clamp_min(1e-12)


def embed_views(encoder: Encoder, image: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
    """Unit embeddings of ``image`` under each view, batched for pooled encoders.

    A spatial encoder's flattened latent is as long as its view is large, so for those the views
    must share one output size (a single view, in practice); :class:`StyleTerm` compares them
    view by view instead.
    """
    if encoder.spatial:
        return torch.cat([unit(encoder.embed(apply_view(v, image))) for v in views])
    batch = torch.cat([resize_antialiased(apply_view(v, image), encoder.input_size) for v in views])
    return unit(encoder.embed(batch))


@dataclass
class StyleTerm:
    """One encoder's pull toward the target.

    Pooled encoders compare against fixed centroids (``origin``/``target``: unit embeddings of the
    original and of the target, averaged over views). Spatial encoders (latent autoencoders) need
    the *same* crop of the target, so they embed the target image under each step's views.
    """

    encoder: Encoder
    origin: torch.Tensor | None = None
    target: torch.Tensor | None = None
    original_image: torch.Tensor | None = None
    target_image: torch.Tensor | None = None

    def shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        """Projection shift of ``cloaked`` under each view (one value per view)."""
        if self.encoder.spatial:
            return torch.cat([self._aligned_shift(cloaked, v) for v in views])
        moved = embed_views(self.encoder, cloaked, views)
        return projection_shift(moved, self.origin[None], self.target[None])

    def _aligned_shift(self, cloaked: torch.Tensor, view: View) -> torch.Tensor:
        # Views differ in size, so latents are compared one view at a time; the original and its
        # target share one batched, gradient-free pass (about a third of the encoder's work).
        moved = unit(self.encoder.embed(apply_view(view, cloaked)))
        with torch.no_grad():
            references = torch.cat([self.original_image, self.target_image])
            origin, target = unit(self.encoder.embed(apply_view(view, references))).split(1)
        return projection_shift(moved, origin, target)


def centroid(encoder: Encoder, image: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
    with torch.no_grad():
        emb = embed_views(encoder, image, views).mean(0)
    return emb / emb.norm()
