"""Encoders: one interface, differentiable preprocessing, concept embeddings, clear errors."""

from __future__ import annotations

import sys

import pytest
import torch

from enginekit import TINY_CLIP, artwork
from sfumato.engine import devices
from sfumato.engine.cloak import cloak_image, load_encoders
from sfumato.engine.encoders import load_encoder
from sfumato.engine.encoders import openclip as openclip_loader
from sfumato.engine.encoders.attention import BatchFirstSelfAttention
from sfumato.engine.encoders.concepts import CONCEPT_TEMPLATES
from sfumato.errors import EncoderError, MissingPackageError, UnknownEncoderError, UsageError
from sfumato.options import CloakRequest


@pytest.mark.parametrize("spec", [TINY_CLIP, "effnet-lite:0"])
def test_any_size_batch_embeds_and_gradients_reach_every_pixel(spec):
    encoder = load_encoder(spec)
    images = torch.rand(2, 3, 150, 97, requires_grad=True)
    embedding = encoder.embed(images)
    assert embedding.shape[0] == 2 and embedding.ndim == 2
    embedding.sum().backward()
    # antialiased resize inside: every full-resolution pixel gets a gradient
    assert (images.grad.abs().sum(1) > 0).float().mean() > 0.99


def test_effnet_concepts_are_rows_of_the_imagenet_head():
    encoder = load_encoder("effnet-lite:0")
    purse, ox = encoder.embed_concepts(["purse", "Ox"])
    names = list(encoder.concept_vocabulary())
    assert torch.equal(purse, encoder.model._fc.weight[names.index("purse")])
    assert torch.equal(ox, encoder.model._fc.weight[names.index("ox")])


def test_effnet_embedding_is_the_pooled_feature_the_head_classifies():
    encoder = load_encoder("effnet-lite:0")
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        logits = encoder.model((images - 0.5) / 0.5)
        assert torch.allclose(encoder.logits(images), logits, atol=1e-4)


def test_a_varied_effnet_differs_per_draw_repeats_per_seed_and_ends_with_its_context():
    encoder = load_encoder("effnet-lite:0")
    images = torch.rand(1, 3, 224, 224)

    def varied(seed: int, draws: int = 1) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad(), encoder.varied(generator):
            return [encoder.embed(images) for _ in range(draws)]

    with torch.no_grad():
        plain = encoder.embed(images)
    first, second = varied(1, draws=2)
    assert not torch.allclose(first, plain, atol=1e-3) and not torch.allclose(first, second, atol=1e-3)
    assert torch.equal(varied(1)[0], first)  # the same seed, the same model
    with torch.no_grad():
        assert torch.equal(encoder.embed(images), plain)  # the real model again outside


def test_a_varied_effnet_sends_less_gradient_through_its_residual_branches(monkeypatch):
    from sfumato.engine.encoders import effnet

    monkeypatch.setattr(effnet, "SKIP_EROSION", 0.0)  # the forward pass is the real model's
    encoder = load_encoder("effnet-lite:0")
    images = torch.rand(1, 3, 224, 224)

    def gradient(vary: bool) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = images.clone().requires_grad_(True)
        with encoder.varied(torch.Generator()) if vary else torch.enable_grad():
            embedding = encoder.embed(pixels)
        embedding.sum().backward()
        return embedding.detach(), pixels.grad

    (plain, plain_grad), (varied, varied_grad) = gradient(False), gradient(True)
    assert torch.allclose(plain, varied, atol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(plain_grad.flatten(), varied_grad.flatten(), dim=0)
    assert 0.2 < cosine < 0.99  # the same model, a differently weighted gradient


def test_tiny_clip_text_tower_embeds_free_text():
    encoder = load_encoder(TINY_CLIP)
    text = encoder.embed_concepts(["a pixel art sprite", "a pencil sketch"])
    assert text.shape == (2, encoder.embed(torch.rand(1, 3, 64, 64)).shape[1])
    assert not torch.allclose(text[0], text[1])


def test_text_tower_is_loaded_only_when_text_is_asked_for_and_from_the_same_weights(tmp_path, monkeypatch):
    """A built-in style never needs the text tower (ViT-B-32's is 0.25 GB); text gets the right one."""
    monkeypatch.setattr(devices, "native_cpu_bfloat16", lambda: False)  # float32, as open_clip's
    open_clip = openclip_loader._open_clip()  # registers sfumato-tiny

    checkpoint_model = open_clip.create_model("sfumato-tiny")
    checkpoint = tmp_path / "tiny.pt"
    torch.save(checkpoint_model.state_dict(), checkpoint)
    encoder = load_encoder(f"openclip:sfumato-tiny@{checkpoint}")
    assert encoder._text_model is None
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected_image = checkpoint_model.encode_image(encoder.preprocess(image))
    assert torch.allclose(encoder.embed(image), expected_image, atol=1e-5)
    assert encoder._text_model is None  # embedding images did not load it
    text = encoder.embed_concepts(["a pencil sketch"])[0]
    tokens = encoder.tokenizer([t.format("a pencil sketch") for t in CONCEPT_TEMPLATES])
    with torch.no_grad():
        expected = torch.nn.functional.normalize(checkpoint_model.encode_text(tokens), dim=-1).mean(0)
    assert torch.allclose(text, expected, atol=1e-5)


def test_image_tower_attention_matches_open_clips_own_with_gradients_on(monkeypatch):
    """The image tower's attention is swapped for a faster batch-first one: the embedding and the
    gradient the search follows must be open_clip's own."""
    monkeypatch.setattr(devices, "native_cpu_bfloat16", lambda: False)  # float32, as open_clip's
    open_clip = openclip_loader._open_clip()
    cpu = torch.device("cpu")
    encoder = openclip_loader.load("sfumato-tiny/random", cpu)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the seed random weights are made with
        reference = open_clip.create_model("sfumato-tiny", pretrained=None)
    kinds = [type(m) for m in encoder.visual.modules()]
    assert BatchFirstSelfAttention in kinds and torch.nn.MultiheadAttention not in kinds
    assert set(encoder.visual.state_dict()) == set(reference.visual.state_dict())
    images = torch.rand(3, 3, 64, 64)
    ours, theirs = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    embedding = encoder.embed(ours)
    expected = reference.encode_image(encoder.preprocess(theirs))
    assert torch.allclose(embedding, expected, atol=1e-5)
    weights = torch.randn(expected.shape)
    (embedding * weights).sum().backward()
    (expected * weights).sum().backward()
    assert ours.grad.abs().sum() > 0
    assert torch.allclose(ours.grad, theirs.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("native", [True, False])
def test_a_vit_follows_the_float32_gradient_in_bfloat16_where_the_cpu_has_it(monkeypatch, native):
    """On a CPU with native bfloat16 a ViT runs in it (a third faster); the search must still get
    float32 embeddings and the direction float32 would give it. Elsewhere it is float32 itself."""
    cpu = torch.device("cpu")
    encoder = openclip_loader.load("sfumato-tiny/random", cpu)
    images = torch.rand(2, 3, 64, 64)

    def embedding_and_gradient(bfloat16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(devices, "native_cpu_bfloat16", lambda: bfloat16)
        pixels = images.clone().requires_grad_(True)
        embedding = encoder.embed(pixels)
        (embedding * torch.linspace(-1, 1, embedding.shape[-1])).sum().backward()
        return embedding, pixels.grad

    exact, exact_grad = embedding_and_gradient(False)
    mixed, mixed_grad = embedding_and_gradient(native)
    assert mixed.dtype == torch.float32
    assert (mixed == exact).all().item() is not native  # bfloat16 rounds: equal only when off
    cosine = torch.nn.functional.cosine_similarity(mixed_grad.flatten(), exact_grad.flatten(), dim=0)
    assert cosine > 0.99


def test_a_convolutional_encoder_stays_in_float32_on_a_bfloat16_cpu(monkeypatch):
    monkeypatch.setattr(devices, "native_cpu_bfloat16", lambda: True)
    encoder = load_encoder("effnet-lite:0", torch.device("cpu"))
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        on_bfloat16_cpu = encoder.embed(images)
        monkeypatch.setattr(devices, "native_cpu_bfloat16", lambda: False)
        assert torch.equal(on_bfloat16_cpu, encoder.embed(images))


def test_random_weights_are_reproducible_so_a_later_text_tower_matches():
    cpu = torch.device("cpu")
    first, second = (openclip_loader.load("sfumato-tiny/random", cpu) for _ in range(2))  # no cache
    assert first is not second
    image = torch.rand(1, 3, 64, 64)
    assert torch.equal(first.embed(image), second.embed(image))
    assert torch.equal(first.embed_concepts(["a cow"]), second.embed_concepts(["a cow"]))


def test_unknown_names_are_usage_errors_naming_the_spec():
    with pytest.raises(UnknownEncoderError, match="unknown encoder 'resnet:50'"):
        load_encoder("resnet:50")
    with pytest.raises(UsageError, match="unknown open_clip model 'NoSuchNet'"):
        load_encoder("openclip:NoSuchNet/random")
    with pytest.raises(UsageError, match="effnet-lite:0, 1 or 2"):
        load_encoder("effnet-lite:7")


def test_unknown_pretrained_tag_lists_the_known_ones():
    with pytest.raises(EncoderError, match="no pretrained weights 'nope'.*laion2b_s34b_b79k"):
        load_encoder("openclip:ViT-B-32/nope")


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(EncoderError, match="checkpoint .*missing.pt does not exist"):
        load_encoder(f"openclip:ViT-B-32@{tmp_path / 'missing.pt'}")


def test_text_to_an_encoder_without_text_tower_says_what_to_do():
    with pytest.raises(EncoderError, match="knows only ImageNet class names"):
        load_encoder("effnet-lite:0").embed_concepts(["a cubist painting"])


def test_no_network_for_a_first_download_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.setattr(openclip_loader, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(EncoderError) as err:
        openclip_loader.load("ViT-B-32/laion2b_s34b_b79k", torch.device("cpu"))
    message = str(err.value)
    assert "could not download the weights of openclip:ViT-B-32/laion2b_s34b_b79k" in message
    assert "openclip:ViT-B-32@FILE" in message and "\n" not in message


def test_random_weights_warn_that_they_protect_against_nothing():
    with pytest.warns(UserWarning, match="random weights.*protects against nothing"):
        openclip_loader.load("ViT-B-32/random", torch.device("cpu"))


def test_a_checkpoint_gone_before_the_text_tower_is_needed_is_one_clear_sentence(tmp_path):
    open_clip = openclip_loader._open_clip()  # registers sfumato-tiny

    checkpoint = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("sfumato-tiny").state_dict(), checkpoint)
    encoder = openclip_loader.load(f"sfumato-tiny@{checkpoint}", torch.device("cpu"))
    encoder.spec = f"openclip:sfumato-tiny@{checkpoint}"
    checkpoint.unlink()
    with pytest.raises(EncoderError, match="could not load the text tower of openclip:sfumato-tiny@") as err:
        encoder.embed_concepts(["a cow"])
    assert "\n" not in str(err.value)


TINY_SIGLIP = "openclip:sfumato-tiny-siglip/random"  # SigLIP's text side (a Hugging Face tokenizer)


@pytest.fixture
def without_transformers(monkeypatch):
    """As if ``transformers`` (sfumato[siglip]) were not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "transformers", None)


def test_a_siglip_encoder_cloaks_toward_a_built_in_style_without_transformers(without_transformers):
    encoders = load_encoders([TINY_SIGLIP], torch.device("cpu"))
    options = CloakRequest(style="pixelart", encoders=(TINY_SIGLIP,), steps=4, threads=1)
    result = cloak_image(artwork(64), options, encoders=encoders)
    member = result.report.encoders[0]
    assert member.loss_after < member.loss_before


def test_a_text_style_on_siglip_without_transformers_names_the_extra_in_one_sentence(without_transformers):
    encoders = load_encoders([TINY_SIGLIP], torch.device("cpu"))
    options = CloakRequest(style="a cubist painting", encoders=(TINY_SIGLIP,), steps=2, threads=1)
    with pytest.raises(MissingPackageError) as caught:
        cloak_image(artwork(64), options, encoders=encoders)
    message = str(caught.value)
    assert "pip install 'sfumato[siglip]'" in message and "transformers" in message
    assert "\n" not in message and message.count(". ") == 0


def test_check_measures_a_siglip_encoder_without_transformers_only_without_zero_shot_names(
    without_transformers,
):
    from sfumato.verify.protection import encoder_protection
    from sfumato.verify.targets import builtin_target

    encoder = load_encoder(TINY_SIGLIP)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    target = builtin_target("halftone", x)
    cloaked = (0.7 * x + 0.3 * target.image).clamp(0, 1)
    figures = encoder_protection(encoder, x, cloaked, target, ("none", "jpeg75"))
    assert "error" not in figures and figures["shift"] > 0
    assert figures["label_before"] is None and figures["label_after"] is None
