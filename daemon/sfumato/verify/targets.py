"""What a cloak was meant to look like to a model, per encoder: the target of a check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from sfumato.engine.cloak import to_array, working_copy
from sfumato.engine.encoders import Encoder
from sfumato.engine.objectives import unit
from sfumato.engine.stylizers import STYLIZERS
from sfumato.engine.targets import StyleRequest, parse_style, reference_images, text_targets
from sfumato.errors import EncoderError, UsageError


def embed(encoder: Encoder, image: torch.Tensor) -> torch.Tensor:
    """Unit embedding (1×D, spatial maps flattened) of a whole image, as a model sees it."""
    with torch.no_grad():
        return unit(encoder.embed(image))


@dataclass
class CheckTarget:
    """``builtin``: the original restyled (embedded under the same transform as the images);
    ``text``: a text embedding; ``folder``: the mean embedding of reference images."""

    kind: str
    label: str
    image: torch.Tensor | None = None
    references: list[torch.Tensor] = field(default_factory=list)
    _fixed: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def embedding(self, encoder: Encoder, transform) -> torch.Tensor:
        """Unit 1×D target embedding; raises EncoderError if ``encoder`` cannot embed it."""
        if self.image is not None:
            return embed(encoder, transform(self.image))
        if encoder.spatial:
            raise EncoderError(
                f"encoder {encoder.spec} compares images region by region and can only be checked "
                f"against a built-in style ({', '.join(STYLIZERS)})"
            )
        if encoder.spec not in self._fixed:
            if self.kind == "text":
                emb = text_targets([encoder], self.label)[0][None]
            else:
                emb = torch.cat([embed(encoder, r) for r in self.references]).mean(0, keepdim=True)
            self._fixed[encoder.spec] = unit(emb)
        return self._fixed[encoder.spec]


def builtin_target(name: str, original: torch.Tensor) -> CheckTarget:
    return CheckTarget("builtin", name, image=STYLIZERS[name](original).clamp(0, 1))


def resolve_target(style: str, original: torch.Tensor) -> CheckTarget:
    """A target from a style as ``sfumato cloak --style`` takes it (``auto`` is the caller's job)."""
    request: StyleRequest = parse_style(style)
    if request.kind == "auto":
        raise UsageError("style auto must be resolved by trying every built-in style")
    if request.kind == "builtin":
        return builtin_target(request.value, original)
    if request.kind == "text":
        return CheckTarget("text", request.value)
    refs = [
        working_copy(to_array(Image.open(p)), 512, original.device)
        for p in reference_images(Path(request.value))
    ]
    return CheckTarget("folder", request.value, references=refs)


def target_from_report(report: dict, original: torch.Tensor) -> CheckTarget:
    """The target a cloak's report names (``target``/``target_kind``), for checking that cloak."""
    kind, label = report.get("target_kind", "builtin"), report["target"]
    if kind == "none" and report.get("poison"):  # poison alone: check the concept it learns
        return CheckTarget("text", report["poison"]["target"])
    if kind == "builtin":
        return builtin_target(label, original)
    return resolve_target(label, original)


def usable(encoders: Sequence[Encoder], target: CheckTarget) -> list[Encoder]:
    """The encoders that can embed ``target`` (every one can embed a built-in style)."""
    if target.image is not None:
        return list(encoders)
    out = []
    for enc in encoders:
        try:
            target.embedding(enc, lambda x: x)
        except EncoderError:
            continue
        out.append(enc)
    return out
