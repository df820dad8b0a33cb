"""Random views of the kind a scraper or trainer applies, all differentiable.

Optimising the cloak over these (expectation over transformation) is what makes it survive
re-posting: crops at several scales, resizing and screenshot-like rescaling, JPEG at varying
quality (kornia's differentiable codec), blur, sharpening and small noise. A view is data, so the
same view can be applied to the cloaked image and to its target (aligned spatial objectives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from sfumato.engine import image_ops


@dataclass(frozen=True)
class View:
    top: int
    left: int
    height: int
    width: int
    out_height: int  # resampled size: below or above the crop size (resize, screenshot rescale)
    out_width: int
    flip: bool = False
    jpeg_quality: float | None = None
    blur_sigma: float | None = None
    sharpen: float | None = None
    noise_std: float = 0.0
    noise_seed: int = 0
    # The resolution an encoder that takes any input size (Encoder.resizable) sees the view at,
    # relative to its own: models we never see run at other resolutions than our surrogates.
    scale: float = 1.0
    whole: bool = False  # the whole image, only resized: how the image is usually seen


# Each step shows the surrogates the views at one of these shares of their own input size: models
# we never see run at other resolutions, and a cloak seen at several scales moves them more.
ENCODER_SCALES = (0.85, 0.95, 1.05, 1.15, 1.25)


def multiple_of_8(value: float) -> int:
    """``value`` rounded to a multiple of 8 (at least 8): view sizes on the 8-px grid that patch
    and latent encoders tile with."""
    return max(8, int(round(value / 8)) * 8)


class ViewSampler:
    """Draws views reproducibly from a seeded generator."""

    def __init__(self, height: int, width: int, seed: int, base_side: int = 224) -> None:
        self.height, self.width = height, width
        self.base_side = base_side
        self.rng = torch.Generator().manual_seed(seed)

    def _uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.rng))

    def _chance(self, p: float) -> bool:
        return float(torch.rand((), generator=self.rng)) < p

    def sample(self, mild: bool = False) -> View:
        """``mild``: the whole image, only resized (how the image is usually seen)."""
        h, w = self.height, self.width
        if mild:
            top = left = 0
            ch, cw = h, w
        else:
            area = self._uniform(0.35, 1.0) * h * w
            aspect = math.exp(self._uniform(math.log(3 / 4), math.log(4 / 3)))
            ch = min(h, max(8, int(round(math.sqrt(area / aspect)))))
            cw = min(w, max(8, int(round(math.sqrt(area * aspect)))))
            top = int(self._uniform(0, h - ch + 1)) if h > ch else 0
            left = int(self._uniform(0, w - cw + 1)) if w > cw else 0
        scale = self._uniform(0.7, 1.5) * self.base_side / min(ch, cw)
        out_h, out_w = multiple_of_8(ch * scale), multiple_of_8(cw * scale)
        if mild:
            return View(top, left, ch, cw, out_h, out_w, whole=True)
        return View(
            top,
            left,
            ch,
            cw,
            out_h,
            out_w,
            flip=self._chance(0.5),
            jpeg_quality=self._uniform(40, 95) if self._chance(0.5) else None,
            blur_sigma=self._uniform(0.3, 1.5) if self._chance(0.3) else None,
            sharpen=self._uniform(0.5, 2.0) if self._chance(0.15) else None,
            noise_std=self._uniform(0.0, 0.03) if self._chance(0.3) else 0.0,
            noise_seed=int(torch.randint(0, 2**31 - 1, (), generator=self.rng)),
        )


class ViewPool:
    """The views of a whole search, drawn from a pool in which each view recurs about ``reuse`` times.

    Aligned objectives compare every view of the cloak with the same view of the original and
    its target; those reference embeddings cost a gradient-free pass of their own (about a third
    of an encoder's work per step). A view that recurs can reuse them, so a pool of a third as
    many views saves most of that pass, and the steps still see fresh combinations of views.
    Every other step opens with a mild view (the whole image, only resized), how the image is
    usually seen.

    Each view belongs to one of the ``ENCODER_SCALES`` and each step draws all its views from one
    scale, so a step is still one batch per encoder and a recurring view keeps its references.
    """

    def __init__(
        self, height: int, width: int, *, seed: int, steps: int, per_step: int, reuse: int = 3
    ) -> None:
        sampler = ViewSampler(height, width, seed=seed)
        groups = len(ENCODER_SCALES)
        mild_uses = (steps + 1) // 2
        other_uses = steps * per_step - mild_uses
        mild_count = max(groups, math.ceil(mild_uses / reuse))
        other_count = max(per_step * groups, math.ceil(other_uses / reuse))
        mild = [sampler.sample(mild=True) for _ in range(mild_count)]
        other = [sampler.sample() for _ in range(other_count)]
        self.mild = [[replace(v, scale=s) for v in mild[i::groups]] for i, s in enumerate(ENCODER_SCALES)]
        self.other = [[replace(v, scale=s) for v in other[i::groups]] for i, s in enumerate(ENCODER_SCALES)]
        self.per_step = per_step
        self.rng = torch.Generator().manual_seed(seed + 1)

    def _pick(self, pool: list[View], count: int) -> list[View]:
        order = torch.randperm(len(pool), generator=self.rng)[:count]
        return [pool[int(i)] for i in order]

    def views(self, step: int) -> list[View]:
        """The views of one step (distinct within the step, all at one scale)."""
        group = int(torch.randint(len(ENCODER_SCALES), (), generator=self.rng))
        if step % 2 == 0:
            return self._pick(self.mild[group], 1) + self._pick(self.other[group], self.per_step - 1)
        return self._pick(self.other[group], self.per_step)


def apply_view(view: View, image: torch.Tensor) -> torch.Tensor:
    """B×3×H×W in [0, 1] → B×3×out_height×out_width in [0, 1], under one view; differentiable
    throughout. The steps are :mod:`sfumato.engine.image_ops`, in the order a re-post applies them."""
    x = image_ops.crop(image, view.top, view.left, view.height, view.width)
    x = image_ops.resize(x, (view.out_height, view.out_width))
    if view.flip:
        x = image_ops.hflip(x)
    if view.blur_sigma:
        x = image_ops.gaussian_blur(x, view.blur_sigma)
    if view.sharpen:
        x = image_ops.sharpen(x, view.sharpen)
    if view.noise_std:
        x = image_ops.add_noise(x, view.noise_std, view.noise_seed)
    x = x.clamp(0, 1)
    if view.jpeg_quality is not None:
        x = image_ops.jpeg_differentiable(x, view.jpeg_quality)
    return x
