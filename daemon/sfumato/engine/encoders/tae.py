"""FLUX.2's latent space through TAEF2, madebyollin's tiny autoencoder (``tae:flux2[@DIR]``).

Cloaking against a generator's own latent space targets what an image model actually learns
from. TAEF2 is a ~1.3 M-parameter, MIT-licensed approximation of the FLUX.2 VAE, published as
``taef2_encoder.pth`` and ``taef2_decoder.pth`` in https://github.com/madebyollin/taesd.

``tae:flux2@DIR`` loads both files from a folder; plain ``tae:flux2`` downloads them once from
that repository into the user cache. Either way their SHA-256 must match the pinned values, so a
changed or corrupted file is refused rather than silently optimised against.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.request
from pathlib import Path

import platformdirs
import torch
from torch import nn

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.encoders.taef2_net import build_decoder, build_encoder
from sfumato.errors import EncoderError
from sfumato.fileops import atomic_write_bytes, file_sha256
from sfumato.specs import parse_encoder

SOURCE_URL = "https://github.com/madebyollin/taesd/raw/main/"
ENCODER_FILE = "taef2_encoder.pth"
DECODER_FILE = "taef2_decoder.pth"
SHA256 = {
    ENCODER_FILE: "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    DECODER_FILE: "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}
_DOWNLOAD_TIMEOUT_S = 60
# Encoder layers whose output a latent term pulls beside the latent: the last residual block at 2×
# and at 4× down-sampling (``taef2_net.build_encoder``: stem, block, then per stage a stride-2
# conv and three blocks).
INNER_LEVELS = (5, 9)


class TAEF2Encoder(Encoder):
    """Spatial latents (B×32×h×w, 8× smaller) of images in [0, 1] at their own size."""

    spatial = True
    # A suggested working size for aligned crops; the network itself takes any size.
    input_size = (256, 256)

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the network takes [0, 1] directly
        # Channels-last convolutions cut about a quarter of the CPU time of a forward and backward
        # pass (the cloak's inner loop), with the same values up to float rounding.
        self.encoder = encoder.to(memory_format=torch.channels_last)
        self.decoder = decoder

    def preprocess(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        # No resize: latents must stay aligned with pixels. Sizes that are not multiples of 8
        # give ceil(H/8)×ceil(W/8) latents (the stride-2 convs pad).
        return images.to(self.mean.dtype)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixels.contiguous(memory_format=torch.channels_last))

    def aligned_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The activations at 2× and 4× down-sampling, then the latent (8×), from one pass.

        A search that pulls only the latent finds directions peculiar to TAEF2's last stages; the
        held-out judge, another network, barely follows them. Pulling the inner maps as well moved
        the judge 1.2-1.3× as far on four paintings, on the cloak and after JPEG 75
        (docs/benchmarks.md, the held-out latent judge)."""
        x = self.preprocess(images).contiguous(memory_format=torch.channels_last)
        levels = []
        for index, layer in enumerate(self.encoder):
            x = layer(x)
            if index in INNER_LEVELS:
                levels.append(x)
        return [*levels, x]

    @property
    def has_decoder(self) -> bool:
        return True

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images of 8h×8w pixels in [0, 1]."""
        return self.decoder(latents.to(self.mean.dtype)).clamp(0.0, 1.0)


def cache_dir() -> Path:
    return platformdirs.user_cache_path("sfumato") / "taef2"


def verified_weights(folder: Path) -> dict[str, Path]:
    """Both weight files in ``folder``; a missing or altered file is refused by name."""
    if not folder.is_dir():
        raise EncoderError(
            f"TAEF2 weights folder {folder} does not exist: give the folder that holds "
            f"{ENCODER_FILE} and {DECODER_FILE}"
        )
    paths = {name: folder / name for name in SHA256}
    for path in paths.values():
        if not path.is_file():
            raise EncoderError(
                f"{path} is missing: the TAEF2 folder must hold {ENCODER_FILE} and {DECODER_FILE}"
            )
    for name, path in paths.items():
        actual, expected = file_sha256(path), SHA256[name]
        if actual != expected:
            raise EncoderError(
                f"{path} is not the published TAEF2 file (SHA-256 {actual[:12]}… instead of "
                f"{expected[:12]}…): download it again from {SOURCE_URL}{name}"
            )
    return paths


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def download_weights(folder: Path) -> None:
    """Fetch whichever weight file is absent or damaged in ``folder``; verify before saving."""
    for name, expected in SHA256.items():
        path = folder / name
        if path.is_file() and file_sha256(path) == expected:
            continue
        try:
            data = _fetch(SOURCE_URL + name)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise EncoderError(
                f"could not download the TAEF2 weights (no network?): connect once, or download "
                f"{ENCODER_FILE} and {DECODER_FILE} from {SOURCE_URL} and use tae:flux2@DIR"
            ) from exc
        if hashlib.sha256(data).hexdigest() != expected:
            raise EncoderError(
                f"the downloaded {name} does not match its pinned SHA-256 (corrupted download or a "
                f"changed upstream file): try again, or use tae:flux2@DIR with verified files"
            )
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:  # disk full stays a TransientError: worth a retry
            raise EncoderError(f"could not save the TAEF2 weights to {path}: {exc}") from exc


def _load_state(module: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)  # copies the float16 values into float32
    except (OSError, RuntimeError, ValueError, KeyError, AttributeError) as exc:
        raise EncoderError(f"could not load TAEF2 weights from {path}: {exc}") from exc
    return module


def load(rest: str, device: torch.device) -> TAEF2Encoder:
    spec = parse_encoder(f"tae:{rest}")  # the model and the folder's '@' are checked there
    if spec.path is not None:
        weights_dir = spec.path
    else:
        weights_dir = cache_dir()
        download_weights(weights_dir)
    paths = verified_weights(weights_dir)
    encoder = _load_state(build_encoder(), paths[ENCODER_FILE])
    decoder = _load_state(build_decoder(), paths[DECODER_FILE])
    return TAEF2Encoder(encoder, decoder).to(device)
