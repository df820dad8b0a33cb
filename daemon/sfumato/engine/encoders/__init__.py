"""Encoders named by spec strings (``openclip:ViT-B-32/laion2b_s34b_b79k``, ``effnet-lite:0``...).

Like open_clip's factory, a spec's scheme picks a loader module; each loader parses the rest.
"""

from __future__ import annotations

import importlib

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.specs import EncoderKind, parse_encoder  # refuses the held-out judge

# kind -> module with ``load(rest: str, device: torch.device) -> Encoder``
LOADERS = {
    EncoderKind.OPENCLIP: "sfumato.engine.encoders.openclip",
    EncoderKind.EFFNET_LITE: "sfumato.engine.encoders.effnet",
    EncoderKind.TAE: "sfumato.engine.encoders.tae",
}

_CACHE: dict[tuple[str, str], Encoder] = {}


def load_encoder(spec: str, device: torch.device | str = "cpu") -> Encoder:
    """Load (once per process and device) the encoder a spec names, frozen and in eval mode."""
    parsed = parse_encoder(spec)  # an unknown kind or model family: one sentence, before any import
    spec = parsed.text
    device = torch.device(device)
    key = (spec, str(device))
    if key not in _CACHE:
        module = importlib.import_module(LOADERS[parsed.kind])
        encoder = module.load(parsed.rest, device)
        encoder.spec = spec
        encoder.eval().requires_grad_(False)
        _CACHE[key] = encoder.to(device)
    return _CACHE[key]


__all__ = ["Encoder", "load_encoder", "LOADERS"]
