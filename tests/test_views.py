"""The views a search optimises over, and the reference embeddings aligned objectives reuse."""

from __future__ import annotations

from collections import Counter

import torch

from enginekit import artwork, as_array
from sfumato.engine.cloak import load_encoders
from sfumato.engine.image_ops import pixelart
from sfumato.engine.objectives import StyleTerm
from sfumato.engine.views import ENCODER_SCALES, ViewPool


def test_view_pool_mixes_fresh_combinations_and_reuses_each_view_a_few_times():
    pool = ViewPool(300, 400, seed=3, steps=60, per_step=3)
    steps = [pool.views(step) for step in range(60)]
    assert all(len(set(views)) == 3 for views in steps)  # distinct within a step
    assert all(views[0].height == 300 and views[0].width == 400 for views in steps[::2])  # mild first
    uses = Counter(view for views in steps for view in views)
    assert 40 <= len(uses) <= 80  # a pool of about a third of the 180 view uses
    assert len({tuple(views) for views in steps}) == 60  # every step a new combination
    again = ViewPool(300, 400, seed=3, steps=60, per_step=3)
    assert [again.views(step) for step in range(60)] == steps  # reproducible for a seed


def test_each_step_shows_its_views_at_one_resolution_and_every_resolution_is_used():
    pool = ViewPool(300, 400, seed=5, steps=60, per_step=3)
    steps = [pool.views(step) for step in range(60)]
    assert all(len({v.scale for v in views}) == 1 for views in steps)
    assert {views[0].scale for views in steps} == set(ENCODER_SCALES)
    scales = {}
    for views in steps:
        for view in views:
            scales.setdefault(view, set()).add(view.scale)
    assert all(len(s) == 1 for s in scales.values())  # a recurring view keeps its scale


class CountingEncoder(torch.nn.Module):
    """Wraps an encoder and records the batches it embeds."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.images, self.sizes = inner, 0, []
        self.spatial, self.input_size, self.spec = inner.spatial, inner.input_size, inner.spec
        self.size_for = inner.size_for

    def embed_with_maps(self, images, size=None):
        self.images += images.shape[0]
        self.sizes.append(tuple(images.shape[-2:]))
        return self.inner.embed_with_maps(images, size)


def test_reference_views_are_embedded_once_and_reused_unchanged():
    (effnet,) = load_encoders(["effnet-lite:0"], torch.device("cpu"))
    image = torch.from_numpy(as_array(artwork(96))).permute(2, 0, 1)[None]
    counting = CountingEncoder(effnet)
    term = StyleTerm(counting, original_image=image, target_image=pixelart(image))
    views = ViewPool(96, 96, seed=0, steps=2, per_step=2).views(1)
    cloaked = (image + 0.02).clamp(0, 1)
    with torch.no_grad():
        first = term.shift(cloaked, views)
        assert counting.images == 2 + 2 * 2  # the cloak's views, plus original and target's
        second = term.shift(cloaked, views)
    assert counting.images == 2 + 2 * 2 + 2  # the second time only the cloak is embedded
    assert torch.allclose(first, second)


def test_a_convnet_sees_each_view_at_its_scale_and_a_vit_at_its_own_size():
    effnet, vit = load_encoders(["effnet-lite:0", "openclip:sfumato-tiny/random"], torch.device("cpu"))
    assert effnet.size_for(1.25) == (280, 280) and effnet.size_for(0.85) == (192, 192)
    assert vit.size_for(1.25) == vit.input_size  # position embeddings fix a ViT's input size
    image = torch.from_numpy(as_array(artwork(96))).permute(2, 0, 1)[None]
    counting = CountingEncoder(effnet)
    term = StyleTerm(counting, original_image=image, target_image=pixelart(image))
    pool = ViewPool(96, 96, seed=1, steps=12, per_step=2)
    for step in range(12):
        views = pool.views(step)
        with torch.no_grad():
            term.shift(image, views)
        assert counting.sizes[-1] == effnet.size_for(views[0].scale)
    assert len(set(counting.sizes)) > 1


def test_a_latent_encoder_sees_the_whole_image_at_its_own_scale_on_its_latent_grid():
    """A generator's autoencoder encodes the image as posted: no resampling, the latent grid of the
    image itself, inside a window that bounds the cost; other views vary scale and grid a little."""
    from sfumato.engine.objectives import SPATIAL_SCALES, SPATIAL_WINDOW, spatial_view
    from sfumato.engine.views import ViewSampler

    height, width = 480, 640
    sampler = ViewSampler(height, width, seed=3)
    for _ in range(20):
        window = spatial_view(sampler.sample(mild=True))
        assert (window.out_height, window.out_width) == (window.height, window.width)
        assert window.top % 8 == 0 and window.left % 8 == 0
        assert max(window.height, window.width) <= SPATIAL_WINDOW
        assert window.top + window.height <= height and window.left + window.width <= width
    scales = []
    for _ in range(40):
        view = sampler.sample()
        window = spatial_view(view)
        assert view.top <= window.top and window.top + window.height <= view.top + view.height
        scales.append(window.out_width / window.width)
    low, high = SPATIAL_SCALES
    assert all(low - 0.05 <= s <= high + 0.05 for s in scales), scales
    assert max(scales) - min(scales) > 0.1  # the scale does vary
