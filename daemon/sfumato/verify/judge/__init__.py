"""The held-out latent judge: a stand-in for an autoencoder the cloak never saw.

A second small student of TAEF2 (itself a student of FLUX.2's VAE), of another build
(``net.py``: plain convs, 16× down-sampling where TAEF2 has residual blocks and 8×), trained by
``bench/train_latent_judge.py`` to reproduce TAEF2's latents, average-pooled 2×2 onto its grid,
from 128-px crops of scikit-image's sample pictures, the shared Monet, generated textures and
restyled and noisy versions of them; never the Van Gogh paintings the benchmarks use. The
weights ship beside this file as float16 (about 500 kB) and their SHA-256 is checked on load.

The search never optimises against it: it is not an :class:`~sfumato.engine.encoders.Encoder`
and the encoder registry refuses its spec, so it cannot be an ensemble member. Its shift, like a
white-box one, is the share of the way from the original's latent to the target's latent the
cloak has moved; through the judge it says how much of a latent cloak carries over to an
autoencoder that was not optimised against.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import torch
from torch import nn

from sfumato.errors import EncoderError
from sfumato.verify.judge.net import DOWNSAMPLING, build_judge

JUDGE_SPEC = "judge:taef2-student"
WEIGHTS = Path(__file__).with_name("judge.pt")
SHA256 = "67657fcb0a1d0c783b664e2e26b32e71d1f959bb753a22338368d35a0cf57e24"


class LatentJudge(nn.Module):
    """Latents (B×32×ceil(H/16)×ceil(W/16)) of images in [0, 1] at their own size."""

    spec = JUDGE_SPEC
    downsampling = DOWNSAMPLING

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """No resize: like a generator's autoencoder, it sees the picture at its own size."""
        with torch.no_grad():
            return self.net(images.to(next(self.net.parameters()).dtype))


def verified_state(path: Path = WEIGHTS, expected: str = SHA256) -> dict[str, torch.Tensor]:
    """The judge's weights, refused if the file is not the one built and pinned."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncoderError(f"the latent judge's weights {path} cannot be read: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EncoderError(
            f"{path} is not the pinned latent judge (SHA-256 {actual[:12]}… instead of {expected[:12]}…): "
            "reinstall sfumato, or rebuild it with bench/train_latent_judge.py and pin its hash"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


@cache
def _load(device: str) -> LatentJudge:
    net = build_judge()
    net.load_state_dict(verified_state(), strict=True)  # float16 values into float32 weights
    return LatentJudge(net).eval().requires_grad_(False).to(device)


def load_judge(device: torch.device | str = "cpu") -> LatentJudge:
    """The judge (loaded once per process and device), frozen, on ``device``."""
    return _load(str(torch.device(device)))


__all__ = ["JUDGE_SPEC", "LatentJudge", "load_judge", "verified_state"]
