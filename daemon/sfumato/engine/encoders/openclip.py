"""open_clip encoders: ``openclip:NAME/PRETRAINED``, ``openclip:NAME@PATH``, ``openclip:NAME/random``.

Weights are fetched once through open_clip's own mechanism (the Hugging Face cache, with a
progress bar) and used offline after that. ``sfumato-tiny`` is a tiny configuration this project
registers so tests exercise the whole CLIP path, text tower included, in seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.encoders.concepts import CONCEPT_TEMPLATES
from sfumato.errors import EncoderError

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


def parse_spec(rest: str) -> tuple[str, str | None, Path | None]:
    """``NAME/TAG`` → (name, tag, None); ``NAME@PATH`` → (name, None, path)."""
    if "@" in rest:
        name, _, path = rest.partition("@")
        return name, None, Path(path).expanduser()
    name, sep, tag = rest.partition("/")
    if not sep or not tag:
        raise EncoderError(
            f"encoder 'openclip:{rest}' needs a pretrained tag or a checkpoint: "
            f"openclip:{name}/TAG (for example openclip:ViT-B-32/laion2b_s34b_b79k), "
            f"openclip:{name}@FILE or openclip:{name}/random"
        )
    return name, tag, None


class OpenClipEncoder(Encoder):
    supports_text = True

    def __init__(self, model, tokenizer) -> None:
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        super().__init__(cfg.get("mean", OPENAI_DATASET_MEAN), cfg.get("std", OPENAI_DATASET_STD))
        size = model.visual.image_size
        self.input_size = tuple(size) if isinstance(size, list | tuple) else (size, size)
        self.model = model
        self.tokenizer = tokenizer

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    @torch.no_grad()
    def embed_concepts(self, names: Sequence[str]) -> torch.Tensor:
        device = self.mean.device
        rows = []
        for name in names:
            prompts = [t.format(name) for t in CONCEPT_TEMPLATES]
            tokens = self.tokenizer(prompts).to(device)
            text = self.model.encode_text(tokens)
            text = text / text.norm(dim=-1, keepdim=True)
            rows.append(text.mean(0))
        return torch.stack(rows)


def load(rest: str, device: torch.device) -> OpenClipEncoder:
    open_clip = _open_clip()
    name, tag, path = parse_spec(rest)
    if name not in open_clip.list_models():
        raise EncoderError(
            f"unknown open_clip model {name!r}: see open_clip.list_models() for names "
            f"(the default is ViT-B-32)"
        )
    if path is not None:
        if not path.is_file():
            raise EncoderError(f"open_clip checkpoint {path} does not exist")
        pretrained: str | None = str(path)
    elif tag == "random":
        if name != "sfumato-tiny":
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
    try:
        model = open_clip.create_model(name, pretrained=pretrained, device=device)
    except (OSError, RuntimeError, ValueError) as exc:
        if path is not None:
            raise EncoderError(
                f"could not load open_clip checkpoint {path} as {name}: {exc}".splitlines()[0]
            ) from exc
        raise EncoderError(
            f"could not download the weights of openclip:{name}/{tag} (no network?): connect "
            f"once so they are cached, or give a local checkpoint as openclip:{name}@FILE"
        ) from exc
    tokenizer = open_clip.get_tokenizer(name)
    return OpenClipEncoder(model, tokenizer)
