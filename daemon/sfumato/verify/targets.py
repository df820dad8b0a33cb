"""What a cloak was meant to look like to a model, per encoder: the target of a check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from sfumato.cloak_report import CloakReport
from sfumato.engine.cloak import to_array, working_copy
from sfumato.engine.encoders import Encoder
from sfumato.engine.objectives import unit
from sfumato.engine.stylizers import STYLIZERS
from sfumato.engine.targets import reference_images, text_targets
from sfumato.errors import EncoderError, UsageError
from sfumato.specs import StyleKind, StyleRequest, parse_style


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
    return target_for(parse_style(style), original)


def target_for(request: StyleRequest, original: torch.Tensor) -> CheckTarget:
    """The check target of a parsed style (``auto`` is the caller's job)."""
    if request.kind is StyleKind.AUTO:
        raise UsageError("style auto must be resolved by trying every built-in style")
    if request.kind is StyleKind.BUILTIN:
        return builtin_target(request.value, original)
    if request.kind is StyleKind.TEXT:
        return CheckTarget("text", request.value)
    refs = [
        working_copy(to_array(Image.open(p)), 512, original.device)
        for p in reference_images(Path(request.value))
    ]
    return CheckTarget("folder", request.value, references=refs)


def target_of_cloak(report: CloakReport, original: torch.Tensor) -> CheckTarget:
    """The target the cloak aimed at, as its report holds it, for checking that cloak."""
    if report.poison_only and report.poison is not None:  # poison alone: the concept it learns
        return CheckTarget("text", report.poison.target)
    return target_for(report.style, original)


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
