"""The views a search optimises over, and the reference embeddings aligned objectives reuse."""

from __future__ import annotations

from collections import Counter

import torch

from enginekit import artwork, as_array
from sfumato.engine.cloak import load_encoders
from sfumato.engine.objectives import StyleTerm
from sfumato.engine.stylizers import pixelart
from sfumato.engine.views import ViewPool


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


class CountingEncoder(torch.nn.Module):
    """Wraps an encoder and counts the images it embeds."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.images = inner, 0
        self.spatial, self.input_size, self.spec = inner.spatial, inner.input_size, inner.spec

    def embed_with_maps(self, images):
        self.images += images.shape[0]
        return self.inner.embed_with_maps(images)


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
