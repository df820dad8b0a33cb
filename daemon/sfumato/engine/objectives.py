"""What the optimiser minimises: move each encoder's view of the cloak toward its target.

The style loss of one encoder is the negative *projection shift*: how far, as a fraction of the
way from the original to the target, the cloaked image's unit embedding has moved. It is
scale-free in each embedding space, whatever the feature norms; ``balance_terms`` then evens out
how hard each ensemble member pulls on the pixels.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.image_ops import resize_antialiased
from sfumato.engine.views import View, apply_view, multiple_of_8


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.flatten(1).float(), dim=1)


def projection_shift(moved: torch.Tensor, origin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """((moved - origin)·(target - origin)) / |target - origin|², per row (unit-normalised inputs)."""
    d = target - origin
    return ((moved - origin) * d).sum(-1) / d.pow(2).sum(-1).clamp_min(1e-12)


MAP_WEIGHT = 0.25  # share of the mid-level map in an aligned pooled term (measured: 0.25 > 0, 0.5, 0.75)

SPATIAL_WINDOW = 512  # largest side, in working pixels, that a spatial encoder looks at per step
SPATIAL_SCALES = (0.85, 1.15)  # around the image's own scale, for views other than the whole image


def spatial_view(view: View, window: int = SPATIAL_WINDOW) -> View:
    """The same view (crop region, flip, JPEG, blur, noise) at about the image's own scale.

    A latent is not scale-invariant, and a generator's autoencoder sees an image at about its posted
    size, not shrunk to the 224-px views pooled encoders take. The whole image (a mild view) is
    seen at exactly its own scale, so the latent grid stays tied to the pixels as posted; other
    views vary the scale a little (a trainer's resize to its bucket size). The window bounds the
    cost. Reproducible from the view alone, so the cloak, the original and the target get the
    very same window.
    """
    rng = random.Random(hash(view))  # a view holds numbers only, so its hash is not salted
    scale = 1.0 if view.whole else rng.uniform(*SPATIAL_SCALES)
    height = min(view.height, max(8, round(window / scale)))
    width = min(view.width, max(8, round(window / scale)))
    # A window of the whole image starts on its 8-px latent grid, so it sees the very latents
    # the whole image encodes to; other views shift the grid (crops do).
    grid = 8 if view.whole else 1
    return replace(
        view,
        top=view.top + rng.randint(0, (view.height - height) // grid) * grid,
        left=view.left + rng.randint(0, (view.width - width) // grid) * grid,
        height=height,
        width=width,
        out_height=height if view.whole else multiple_of_8(height * scale),
        out_width=width if view.whole else multiple_of_8(width * scale),
    )


def view_batch(
    encoder: Encoder, image: torch.Tensor, views: Sequence[View]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``image`` under each view, as one batch at the input size the encoder takes them at.

    One batch has one size: that of the first view's scale (a step's views share theirs).
    """
    size = encoder.size_for(views[0].scale)
    return torch.cat([resize_antialiased(apply_view(v, image), size) for v in views]), size


def embed_views(encoder: Encoder, image: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
    """Unit embeddings of ``image`` under each view, batched for pooled encoders.

    A spatial encoder's flattened latent is as long as its view is large, so for those the views
    must share one output size (a single view, in practice); :class:`StyleTerm` compares them
    view by view instead.
    """
    if encoder.spatial:
        return torch.cat([unit(encoder.embed(apply_view(v, image))) for v in views])
    return unit(encoder.embed(*view_batch(encoder, image, views)))


@dataclass
class StyleTerm:
    """One encoder's pull toward the target.

    With an image target (``original_image``/``target_image``: built-in styles) every view of the
    cloak is compared with the same view of the original and the target. With a text or folder
    target, pooled encoders compare against fixed unit embeddings (``origin``/``target``).
    """

    encoder: Encoder
    origin: torch.Tensor | None = None
    target: torch.Tensor | None = None
    original_image: torch.Tensor | None = None
    target_image: torch.Tensor | None = None
    weight: float = 1.0  # set by balance_terms, so no ensemble member drowns the others
    # unit embeddings of the original and the target under each view seen so far (views recur)
    _references: dict = field(default_factory=dict, repr=False, compare=False)

    def shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        """Weighted projection shift of ``cloaked`` under each view (one value per view), or under
        the first view only for a latent encoder."""
        if self.encoder.spatial:
            # One large window a step, not one per view: the latent moves with the fine detail
            # of the whole area it sees, and on TAEF2 one 512-px window a step moved it twice as
            # far as three 256-px windows did (bench/latent.py; docs/design.md, latent encoders).
            shifts = self._aligned_shift(cloaked, views[0])
        elif self.target_image is not None:
            shifts = self._aligned_pooled_shift(cloaked, views)
        else:
            moved = embed_views(self.encoder, cloaked, views)
            shifts = projection_shift(moved, self.origin[None], self.target[None])
        return self.weight * shifts

    def _aligned_pooled_shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        """Against an image target, compare each view with the *same* view of the target.

        A JPEG-compressed crop of the cloak is measured against the same compressed crop of the
        restyled image, not against a clean average; where the encoder exposes mid-level maps,
        those are pulled toward the target's too (``MAP_WEIGHT``), which transfers best.
        """

        missing = [v for v in dict.fromkeys(views) if v not in self._references]
        if missing:
            with torch.no_grad():
                original, size = view_batch(self.encoder, self.original_image, missing)
                target, _ = view_batch(self.encoder, self.target_image, missing)
                ref_emb, ref_maps = self.encoder.embed_with_maps(torch.cat([original, target]), size)
            rows = [unit(ref_emb).chunk(2)]
            if ref_maps is not None:
                rows.append(unit(ref_maps).chunk(2))
            for i, view in enumerate(missing):
                self._references[view] = [(origin[i], target[i]) for origin, target in rows]
        moved, moved_maps = self.encoder.embed_with_maps(*view_batch(self.encoder, cloaked, views))
        pairs = [self._references[v] for v in views]
        origin, target = (torch.stack([p[0][k] for p in pairs]) for k in (0, 1))
        shift = projection_shift(unit(moved), origin, target)
        if moved_maps is None:
            return shift
        map_origin, map_target = (torch.stack([p[1][k] for p in pairs]) for k in (0, 1))
        map_shift = projection_shift(unit(moved_maps), map_origin, map_target)
        return (1 - MAP_WEIGHT) * shift + MAP_WEIGHT * map_shift

    def _aligned_shift(self, cloaked: torch.Tensor, view: View) -> torch.Tensor:
        """The mean shift over the encoder's aligned levels (its latent, and inner maps where it
        exposes them: :meth:`Encoder.aligned_levels`)."""
        # Views differ in size, so latents are compared one view at a time; the original and its
        # target share one batched, gradient-free pass, kept for when the view recurs.
        window = spatial_view(view)
        if view not in self._references:
            with torch.no_grad():
                references = torch.cat([self.original_image, self.target_image])
                levels = self.encoder.aligned_levels(apply_view(window, references))
                self._references[view] = [unit(level).split(1) for level in levels]
        moved = self.encoder.aligned_levels(apply_view(window, cloaked))
        shifts = [
            projection_shift(unit(level), origin, target)
            for level, (origin, target) in zip(moved, self._references[view], strict=True)
        ]
        return torch.stack(shifts).mean(0)


def centroid(encoder: Encoder, image: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
    with torch.no_grad():
        emb = embed_views(encoder, image, views).mean(0)
    return emb / emb.norm()


# Mean |d shift / d pixel| of EfficientNet-Lite and ViT-B-32 on the original image: the pull the
# SSIM weight and step schedule were tuned against, used when no pooled encoder is in the ensemble.
REFERENCE_PULL = 1e-4


def balance_terms(terms: Sequence[StyleTerm], image: torch.Tensor, views: Sequence[View]) -> list[StyleTerm]:
    """Weight each spatial term so that it pulls on the pixels as hard as the pooled ones do.

    The projection shift is scale-free in each embedding space, but not per pixel: TAEF2's latent
    moves ten to fifteen times less than EfficientNet's or ViT-B-32's features for the same change.
    Unweighted, the sign of an ensemble's summed gradient would follow the pooled encoders alone,
    and on its own the latent term would be outweighed by the SSIM term and barely move. The
    weights are set once, on the original image; pooled terms keep weight 1 (their pulls are
    within a few times of each other, and the search is tuned on them).
    """
    if not any(term.encoder.spatial for term in terms):
        return list(terms)  # pooled terms keep weight 1: nothing to measure
    sizes = []
    for term in terms:
        # View by view: a spatial term looks at one view a step, a pooled one at all of them.
        pulls = []
        for view in views:
            x = image.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(term.shift(x, [view]).mean(), x)
            pulls.append(float(grad.abs().mean()))
        sizes.append(sum(pulls) / len(pulls))
    pooled = [size for term, size in zip(terms, sizes, strict=True) if not term.encoder.spatial]
    reference = sum(pooled) / len(pooled) if pooled else REFERENCE_PULL
    weighted = []
    for term, size in zip(terms, sizes, strict=True):
        if term.encoder.spatial and size > 0:
            term = replace(term, weight=term.weight * min(reference / size, 100.0))
        weighted.append(term)
    return weighted
