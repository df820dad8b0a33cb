"""The built-in styles by name: what ``--style``, the config and the reports call them.

The ops themselves are in :mod:`sfumato.engine.image_ops`; the names (and their order, which
``auto`` and the config's list follow) are kept here, apart from the pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sfumato.engine.image_ops import halftone, mosaic, pixelart, popart, sketch

STYLIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "pixelart": pixelart,
    "popart": popart,
    "sketch": sketch,
    "mosaic": mosaic,
    "halftone": halftone,
}
