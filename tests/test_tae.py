"""The tae:flux2 encoder: the real TAEF2 weights load, encode, reconstruct and pass gradients."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sfumato.engine.encoders import load_encoder, tae
from sfumato.engine.encoders.taef2_net import build_decoder, build_encoder
from sfumato.errors import EncoderError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TAEF2_DIR = SHARED / "models" / "taef2"
ART = SHARED / "data" / "art" / "vangogh" / "sunflowers-1888.png"

needs_weights = pytest.mark.skipif(
    not (TAEF2_DIR / tae.ENCODER_FILE).is_file(),
    reason=f"the shared TAEF2 weights are not at {TAEF2_DIR}",
)


@pytest.fixture(scope="module")
def encoder():
    if not (TAEF2_DIR / tae.ENCODER_FILE).is_file():
        pytest.skip(f"the shared TAEF2 weights are not at {TAEF2_DIR}")
    return load_encoder(f"tae:flux2@{TAEF2_DIR}")


def _art(size: int) -> torch.Tensor:
    if not ART.is_file():
        pytest.skip(f"the shared Van Gogh image is not at {ART}")
    image = Image.open(ART).convert("RGB").resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


@needs_weights
def test_published_state_dicts_fit_the_network_exactly():
    for build, name in ((build_encoder, tae.ENCODER_FILE), (build_decoder, tae.DECODER_FILE)):
        state = torch.load(TAEF2_DIR / name, map_location="cpu", weights_only=True)
        net = build()
        result = net.load_state_dict(state, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        assert all(p.dtype == torch.float32 for p in net.parameters())


def test_spec_gives_a_spatial_frozen_encoder_with_a_decoder(encoder):
    assert encoder.spatial and encoder.has_decoder
    assert encoder.spec == f"tae:flux2@{TAEF2_DIR}"
    assert not any(p.requires_grad for p in encoder.parameters())


def test_latents_are_32_channels_at_one_eighth_of_any_size(encoder):
    with torch.no_grad():
        assert encoder.embed(torch.rand(2, 3, 64, 64)).shape == (2, 32, 8, 8)
        assert encoder.embed(torch.rand(1, 3, 70, 45)).shape == (1, 32, 9, 6)


def test_decoder_reconstructs_a_painting(encoder):
    # Measured 26.5 dB at 256 px (27.5 dB at 512 px); other block wirings gave 16-25.8 dB.
    image = _art(256)
    with torch.no_grad():
        decoded = encoder.decode(encoder.embed(image))
    assert decoded.shape == image.shape
    assert decoded.min() >= 0 and decoded.max() <= 1
    assert _psnr(decoded, image) > 26.0


def test_gradients_reach_every_part_of_the_image(encoder):
    image = _art(64).requires_grad_(True)
    encoder.embed(image).square().mean().backward()
    grad = image.grad.abs().sum(dim=1)[0]
    quadrants = [grad[:32, :32], grad[:32, 32:], grad[32:, :32], grad[32:, 32:]]
    assert all(float(q.mean()) > 0 for q in quadrants)


def test_text_concepts_are_refused_clearly(encoder):
    with pytest.raises(EncoderError, match="cannot embed text"):
        encoder.embed_concepts(["a handbag"])


def test_unknown_variant_is_refused():
    with pytest.raises(EncoderError, match="tae:flux2"):
        tae.load("flux3", torch.device("cpu"))


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(EncoderError, match="nowhere.*does not exist"):
        tae.load(f"flux2@{missing}", torch.device("cpu"))


def test_folder_without_decoder_names_the_missing_file(tmp_path):
    (tmp_path / tae.ENCODER_FILE).write_bytes(b"x")
    with pytest.raises(EncoderError, match=r"taef2_decoder\.pth is missing"):
        tae.load(f"flux2@{tmp_path}", torch.device("cpu"))


@needs_weights
def test_file_with_wrong_hash_is_refused_by_name(tmp_path):
    shutil.copy(TAEF2_DIR / tae.ENCODER_FILE, tmp_path)
    (tmp_path / tae.DECODER_FILE).write_bytes(b"not the published decoder")
    with pytest.raises(EncoderError, match=r"taef2_decoder\.pth is not the published TAEF2 file"):
        tae.load(f"flux2@{tmp_path}", torch.device("cpu"))


def test_failed_download_says_what_to_do(tmp_path, monkeypatch):
    def offline(url: str) -> bytes:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(tae, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(tae, "_fetch", offline)
    with pytest.raises(EncoderError, match="could not download.*tae:flux2@DIR"):
        tae.load("flux2", torch.device("cpu"))


def test_corrupted_download_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(tae, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(tae, "_fetch", lambda url: b"<html>rate limited</html>")
    with pytest.raises(EncoderError, match="SHA-256"):
        tae.load("flux2", torch.device("cpu"))
    assert not any((tmp_path / "cache").glob("*.pth"))


@needs_weights
def test_download_happens_once_into_the_cache(tmp_path, monkeypatch):
    fetched: list[str] = []

    def from_shared(url: str) -> bytes:
        fetched.append(url)
        return (TAEF2_DIR / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(tae, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(tae, "_fetch", from_shared)
    first = tae.load("flux2", torch.device("cpu"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(tae.SHA256)
    assert len(fetched) == 2 and all(u.startswith(tae.SOURCE_URL) for u in fetched)

    second = tae.load("flux2", torch.device("cpu"))
    assert len(fetched) == 2
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(first.embed(x), second.embed(x))
