"""Encoders named by spec strings (``openclip:ViT-B-32/laion2b_s34b_b79k``, ``effnet-lite:0``...).

Like open_clip's factory, a spec's scheme picks a loader module; each loader parses the rest.
"""

from __future__ import annotations

import importlib

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.errors import UnknownEncoderError

# scheme -> module with ``load(rest: str, device: torch.device) -> Encoder``
LOADERS = {
    "openclip": "sfumato.engine.encoders.openclip",
    "effnet-lite": "sfumato.engine.encoders.effnet",
    "tae": "sfumato.engine.encoders.tae",
}

# Schemes the search must never optimise against: the held-out latent judge (sfumato.verify.judge)
# only checks cloaks; a cloak computed against it would make its check meaningless.
NEVER_OPTIMISED = ("judge",)

_CACHE: dict[tuple[str, str], Encoder] = {}


def load_encoder(spec: str, device: torch.device | str = "cpu") -> Encoder:
    """Load (once per process and device) the encoder a spec names, frozen and in eval mode."""
    spec = spec.strip()
    scheme, sep, rest = spec.partition(":")
    if scheme in NEVER_OPTIMISED:
        raise UnknownEncoderError(
            f"{spec!r} is the held-out latent judge: it only checks cloaks and is never optimised "
            "against, so it is no encoder to cloak or check with (sfumato check reports it on its own)"
        )
    if not sep or scheme not in LOADERS:
        known = ", ".join(f"{s}:..." for s in LOADERS)
        raise UnknownEncoderError(f"unknown encoder {spec!r}: use one of {known}")
    device = torch.device(device)
    key = (spec, str(device))
    if key not in _CACHE:
        module = importlib.import_module(LOADERS[scheme])
        encoder = module.load(rest, device)
        encoder.spec = spec
        encoder.eval().requires_grad_(False)
        _CACHE[key] = encoder.to(device)
    return _CACHE[key]


__all__ = ["Encoder", "load_encoder", "LOADERS", "NEVER_OPTIMISED"]
