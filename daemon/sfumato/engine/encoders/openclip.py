"""open_clip encoders: ``openclip:NAME/PRETRAINED``, ``openclip:NAME@PATH``, ``openclip:NAME/random``.

Weights are fetched once through open_clip's own mechanism (the Hugging Face cache, with a
progress bar) and used offline after that. ``sfumato-tiny`` is a tiny configuration this project
registers so tests exercise the whole CLIP path, text tower included, in seconds;
``sfumato-tiny-siglip`` is the same with SigLIP's text side (its Hugging Face tokenizer), so tests
see what a SigLIP-family model needs, and does not, without a download.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sfumato.engine.devices import cpu_bfloat16
from sfumato.engine.encoders.attention import use_batch_first_attention
from sfumato.engine.encoders.base import Encoder
from sfumato.engine.encoders.concepts import CONCEPT_TEMPLATES
from sfumato.errors import EncoderError, MissingPackageError
from sfumato.specs import parse_encoder

_CONFIG_DIR = Path(__file__).with_name("model_configs")
_registered = False


def _open_clip():
    """Import open_clip and register the project's model configs (once)."""
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True
    return open_clip


class OpenClipEncoder(Encoder):
    """The image tower, always; the text tower and its tokenizer only once a text or concept is
    asked for.

    Most cloaks aim at a built-in style and never use text, and ViT-B-32's text tower is a quarter
    of a gigabyte; so ``build`` (which makes the same model again, from the same weights) is kept
    instead, and called the first time :meth:`embed_concepts` is. SigLIP-family models tokenize
    with a Hugging Face tokenizer (the ``transformers`` package, an extra): a built-in style must
    not need it, so ``make_tokenizer`` is called late too.
    """

    supports_text = True

    def __init__(
        self,
        model,
        make_tokenizer: Callable[[], Callable[[Sequence[str]], torch.Tensor]],
        build: Callable[[], torch.nn.Module],
    ) -> None:
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        from open_clip.transformer import VisionTransformer

        super().__init__(cfg.get("mean", OPENAI_DATASET_MEAN), cfg.get("std", OPENAI_DATASET_STD))
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, list | tuple) else (size, size)
        self.visual = model.visual
        # open_clip's own ViTs run in bfloat16 on a CPU that has it; its ResNets and timm towers
        # are convolutional or unknown here, and stay in float32.
        self._bfloat16_on_cpu = isinstance(model.visual, VisionTransformer)
        use_batch_first_attention(self.visual)  # same attention, a quarter faster with gradients
        self._make_tokenizer = make_tokenizer
        self._tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None
        self._build = build
        self._text_model: torch.nn.Module | None = None

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        # what open_clip's encode_image does, without normalising
        if not self._bfloat16_on_cpu:
            return self.visual(pixels)
        with cpu_bfloat16(pixels.device):
            return self.visual(pixels).float()

    @property
    def tokenizer(self) -> Callable[[Sequence[str]], torch.Tensor]:
        """Made on first use: SigLIP's needs ``transformers``, which a built-in style must not."""
        if self._tokenizer is None:
            try:
                self._tokenizer = self._make_tokenizer()
            except ImportError as exc:
                raise MissingPackageError(
                    f"{self.spec} needs the {exc.name or 'transformers'} package for text styles and "
                    f"concepts: install it with pip install 'sfumato[siglip]' (built-in styles and "
                    f"reference folders work without it)"
                ) from exc
            except (OSError, ValueError) as exc:
                raise EncoderError(
                    f"could not load the tokenizer of {self.spec} (no network?): connect once so it "
                    f"is cached ({str(exc).splitlines()[0]})"
                ) from exc
        return self._tokenizer

    def _text(self) -> torch.nn.Module:
        if self._text_model is None:
            try:
                model = self._build()
            except (OSError, RuntimeError, ValueError) as exc:
                raise EncoderError(
                    f"could not load the text tower of {self.spec}: its weights are gone from "
                    f"where they were loaded ({str(exc).splitlines()[0]}); restart sfumato to load them again"
                ) from exc
            model.visual = None  # the image tower is already here
            self._text_model = model.to(self.mean.device).eval()
        return self._text_model

    @torch.no_grad()
    def embed_concepts(self, names: Sequence[str]) -> torch.Tensor:
        device = self.mean.device
        rows = []
        for name in names:
            prompts = [t.format(name) for t in CONCEPT_TEMPLATES]
            tokens = self.tokenizer(prompts).to(device)
            text = self._text().encode_text(tokens)
            text = text / text.norm(dim=-1, keepdim=True)
            rows.append(text.mean(0))
        return torch.stack(rows)


@contextlib.contextmanager
def _quiet_hub(offline: bool):
    """Hub and open_clip log every retry; the user gets one sentence from us instead."""
    import huggingface_hub.constants as hub

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.CRITICAL

    quiet, was_offline = _Drop(), hub.HF_HUB_OFFLINE
    root, hub_log = logging.getLogger(), logging.getLogger("huggingface_hub")
    root.addFilter(quiet)
    hub_log.addFilter(quiet)
    hub.HF_HUB_OFFLINE = offline or was_offline
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = was_offline
        root.removeFilter(quiet)
        hub_log.removeFilter(quiet)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _create(open_clip, name: str, pretrained: str | None, device: torch.device, *, download: bool):
    """Use cached weights without touching the network; download (with a progress bar) only once.

    Random weights come from a fixed seed, so the text tower built later matches the image tower.
    """
    if pretrained is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return open_clip.create_model(name, pretrained=None, device=device)
    if not download:
        with _quiet_hub(offline=False):
            return open_clip.create_model(name, pretrained=pretrained, device=device)
    try:
        with _quiet_hub(offline=True):
            return open_clip.create_model(name, pretrained=pretrained, device=device)
    except (OSError, RuntimeError, ValueError):
        pass  # not in the cache yet
    if not _hub_reachable():
        raise OSError("the model hub cannot be reached")
    return open_clip.create_model(name, pretrained=pretrained, device=device)


def load(rest: str, device: torch.device) -> OpenClipEncoder:
    open_clip = _open_clip()
    spec = parse_encoder(f"openclip:{rest}")  # the model family is checked there, without torch
    name, tag, path = spec.model, spec.tag, spec.path
    if path is not None:
        if not path.is_file():
            raise EncoderError(f"open_clip checkpoint {path} does not exist")
        pretrained: str | None = str(path)
    elif tag == "random":
        if not name.startswith("sfumato-tiny"):
            warnings.warn(
                f"openclip:{name}/random has random weights: use it for tests and timing only, "
                f"it protects against nothing",
                stacklevel=2,
            )
        pretrained = None
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if tag not in tags:
            raise EncoderError(
                f"open_clip model {name} has no pretrained weights {tag!r}: "
                f"choose one of {', '.join(tags) or '(none: use @FILE)'}"
            )
        pretrained = tag
    download = path is None and tag != "random"

    def build() -> torch.nn.Module:
        # Called again for the text tower: the weights are cached (or seeded) by then, and the
        # cache is read offline first, so that second call touches no network.
        return _create(open_clip, name, pretrained, device, download=download)

    try:
        model = build()
    except (OSError, RuntimeError, ValueError) as exc:
        if path is not None:
            raise EncoderError(
                f"could not load open_clip checkpoint {path} as {name}: {exc}".splitlines()[0]
            ) from exc
        raise EncoderError(
            f"could not download the weights of openclip:{name}/{tag} (no network?): connect "
            f"once so they are cached, or give a local checkpoint as openclip:{name}@FILE"
        ) from exc
    return OpenClipEncoder(model, lambda: open_clip.get_tokenizer(name), build)
