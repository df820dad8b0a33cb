"""Resolve a style request (built-in name, free text, folder of references, auto) to a target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.stylizers import STYLIZERS
from sfumato.errors import EncoderError, MissingPackageError, UsageError
from sfumato.image_names import is_image_name


@dataclass(frozen=True)
class StyleRequest:
    """``kind``: "builtin" (``value`` names a stylizer), "text", "folder" (a path), "auto" or
    "none" (no style cloak: poison alone)."""

    kind: str
    value: str

    @property
    def label(self) -> str:
        """The name the report gives and a caller can pass back as ``style`` to get the same target."""
        return self.value


def parse_style(style: str) -> StyleRequest:
    text = (style or "auto").strip()
    if not text:
        raise UsageError("style is empty: give a built-in style, free text, a folder or auto")
    lowered = text.lower()
    if lowered == "auto":
        return StyleRequest("auto", "auto")
    if lowered == "none":
        return StyleRequest("none", "none")
    if lowered in STYLIZERS:
        return StyleRequest("builtin", lowered)
    path = Path(text).expanduser()
    if path.is_dir():
        return StyleRequest("folder", str(path.resolve()))
    if any(sep in text for sep in ("/", "\\")) and not path.exists():
        raise UsageError(f"style folder {text} does not exist")
    return StyleRequest("text", text)


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
