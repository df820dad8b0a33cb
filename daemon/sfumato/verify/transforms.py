"""What happens to a posted picture, by the names a check reports: the re-encodings it measures
the cloak through.

Real codecs and resamplers (Pillow's JPEG, antialiased resizing), not the optimiser's
differentiable stand-ins, so a check cannot be fooled by the approximations the search used.
The ops are in :mod:`sfumato.engine.image_ops`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sfumato.engine.image_ops import half_size, identity, jpeg75, light_blur, screenshot

TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": identity,
    "jpeg75": jpeg75,
    "half-size": half_size,
    "blur": light_blur,
    "screenshot": screenshot,
}
