"""A style request's target: reference images of a folder, text embeddings per encoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.stylizers import STYLIZERS
from sfumato.errors import EncoderError, MissingPackageError, UsageError
from sfumato.image_names import is_image_name
from sfumato.specs import StyleRequest, parse_style  # parsed where the CLI and config parse it

__all__ = ["StyleRequest", "parse_style", "reference_images", "text_targets"]


def reference_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if is_image_name(p.name))
    if not files:
        raise UsageError(f"style folder {folder} holds no JPG or PNG reference images")
    return files


def text_targets(encoders: Sequence[Encoder], text: str) -> list[torch.Tensor]:
    """Unit text embeddings per encoder; every encoder must have a text tower (or know the class)."""
    out = []
    for enc in encoders:
        if not (enc.supports_text or enc.supports_classes):
            raise EncoderError(
                f"style {text!r} is text, but encoder {enc.spec} cannot embed text: use a "
                f"built-in style ({', '.join(STYLIZERS)}), a folder of reference images, or "
                f"openclip encoders only"
            )
        try:
            emb = enc.embed_concepts([text])[0]
        except MissingPackageError:
            raise
        except EncoderError:
            raise EncoderError(
                f"style {text!r} is text, but encoder {enc.spec} cannot embed text: use a "
                f"built-in style ({', '.join(STYLIZERS)}) or a folder of reference images"
            ) from None
        out.append(emb / emb.norm())
    return out
