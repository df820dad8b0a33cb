"""How far each encoder sees the cloaked image moved toward its target, through re-encodings
and purifiers.

The figures per encoder and transform: cosine similarities of the original, the cloak and the
target, the projection shift (the share of the way from the original to the target the cloak
has gone: 0 = nowhere, 1 = all the way) and the zero-shot label before and after. After a
purifier, the shift is measured from the *purified original*, so what a purifier does to any
picture does not count as protection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sfumato.engine.encoders import Encoder
from sfumato.engine.objectives import projection_shift
from sfumato.engine.poison import TOP_K
from sfumato.engine.stylizers import STYLIZERS
from sfumato.errors import EncoderError, MissingPackageError
from sfumato.verify.targets import CheckTarget, builtin_target, embed
from sfumato.verify.transforms import TRANSFORMS

# What open_clip encoders name an image with: the built-in styles and some everyday concepts.
STYLE_PHRASES = {
    "pixelart": "pixel art",
    "popart": "pop art",
    "sketch": "a pencil sketch",
    "mosaic": "a tile mosaic",
    "halftone": "a halftone comic print",
}
EVERYDAY_CONCEPTS = (
    "an oil painting",
    "a watercolour",
    "a photograph",
    "a digital illustration",
    "an anime drawing",
    "flowers",
    "a landscape",
    "a portrait",
    "a cat",
    "a dog",
    "a cow",
    "a handbag",
    "a car",
    "a building",
    "food",
    "text",
)


def _vocabulary(encoder: Encoder, target: CheckTarget) -> list[str] | None:
    if not encoder.supports_text:
        return None
    words = list(STYLE_PHRASES.values()) + list(EVERYDAY_CONCEPTS)
    if target.kind == "text" and target.label not in words:
        words.append(target.label)
    return words


class Labeller:
    """Zero-shot names: an ImageNet classifier's top class, or the closest vocabulary phrase."""

    def __init__(self, encoder: Encoder, target: CheckTarget) -> None:
        self.encoder = encoder
        self.words = _vocabulary(encoder, target)
        self.concepts = None
        if self.words is not None:
            try:
                concepts = encoder.embed_concepts(self.words)
            except MissingPackageError:  # a SigLIP tokenizer without sfumato[siglip]: the figures stand
                self.words = None
            else:
                self.concepts = torch.nn.functional.normalize(concepts.float(), dim=-1)

    def __call__(self, image: torch.Tensor, embedding: torch.Tensor) -> str | None:
        if hasattr(self.encoder, "logits"):
            names = self.encoder.concept_vocabulary()
            with torch.no_grad():
                return names[int(self.encoder.logits(image).argmax())]
        if self.concepts is None:
            return None
        return self.words[int((embedding @ self.concepts.T).argmax())]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a * b).sum()), 5)


def transform_figures(
    encoder: Encoder,
    original: torch.Tensor,
    cloaked: torch.Tensor,
    target: CheckTarget,
    transform,
    labeller: Labeller | None = None,
) -> dict:
    """Figures of one encoder under one transform (applied alike to original, cloak and target)."""
    seen_x, seen_c = transform(original), transform(cloaked)
    x, c = embed(encoder, seen_x), embed(encoder, seen_c)
    t = target.embedding(encoder, transform)
    figures = {
        "cos_original_target": _cos(x, t),
        "cos_cloaked_target": _cos(c, t),
        "cos_cloaked_original": _cos(c, x),
        "shift": round(float(projection_shift(c, x, t)[0]), 4),
    }
    if labeller is not None:
        figures["label_before"] = labeller(seen_x, x)
        figures["label_after"] = labeller(seen_c, c)
    return figures


def encoder_protection(
    encoder: Encoder,
    original: torch.Tensor,
    cloaked: torch.Tensor,
    target: CheckTarget,
    transforms: Sequence[str] = tuple(TRANSFORMS),
) -> dict:
    """One encoder's view of the cloak: its figures on the image and after each transform."""
    try:
        labeller = Labeller(encoder, target)
        rows = {
            name: transform_figures(encoder, original, cloaked, target, TRANSFORMS[name], labeller)
            for name in transforms
        }
    except EncoderError as exc:
        return {"encoder": encoder.spec, "error": str(exc)}
    shifts = [row["shift"] for row in rows.values()]
    first = rows[transforms[0]]
    return {
        "encoder": encoder.spec,
        "shift": first["shift"],
        "worst_shift": min(shifts),
        "label_before": first.get("label_before"),
        "label_after": first.get("label_after"),
        "transforms": rows,
    }


def target_hit(encoder: Encoder, image: torch.Tensor, target: CheckTarget) -> bool | None:
    """Whether a classifier puts a concept target among its top-5 classes (None: no classifier,
    or not one of its classes), as a poison's success is counted."""
    if target.kind != "text" or not hasattr(encoder, "logits"):
        return None
    names = [n.lower() for n in encoder.concept_vocabulary()]
    if target.label.lower() not in names:
        return None
    with torch.no_grad():
        return names.index(target.label.lower()) in encoder.logits(image)[0].topk(TOP_K).indices.tolist()


def purified_protection(
    encoder: Encoder,
    purified: dict[str, tuple[torch.Tensor, torch.Tensor]],
    target: CheckTarget,
    *,
    poison: bool = False,
) -> dict:
    """One encoder's shift after each purifier (``purified``: name → the purified original and
    cloak), projected on the way from the purified original to the target itself; the worst one;
    for a poison, whether a classifier still sees the target (top 5) after each. Called for
    encoders that could embed the target (``encoder_protection`` gave no error)."""
    t = target.embedding(encoder, lambda image: image)
    rows = {}
    for name, (px, pc) in purified.items():
        x, c = embed(encoder, px), embed(encoder, pc)
        rows[name] = {"shift": round(float(projection_shift(c, x, t)[0]), 4)}
        if poison:
            rows[name]["hit"] = target_hit(encoder, pc, target)
    if not rows:
        return {}
    worst = min(rows, key=lambda name: rows[name]["shift"])
    out = {"purifiers": rows, "worst_purified_shift": rows[worst]["shift"], "worst_purifier": worst}
    hits = [row.get("hit") for row in rows.values()]
    if poison and None not in hits:
        out["hit_after_every_purifier"] = all(hits)
    return out


def strongest_builtin(
    encoders: Sequence[Encoder], original: torch.Tensor, cloaked: torch.Tensor
) -> tuple[CheckTarget, dict[str, float]]:
    """The built-in style the cloak moved toward most: the largest gain in cosine similarity to
    the restyled original, cos(x′, t) − cos(x, t), averaged over the encoders, on the image
    itself. What ``--style auto`` checks against, since a cloak file does not record its target.
    (Not the projection shift: a large move off to the side projects onto every nearby style.)"""
    gains, targets = {}, {}
    seen = [(embed(e, original), embed(e, cloaked)) for e in encoders]
    for name in STYLIZERS:
        targets[name] = builtin_target(name, original)
        values = []
        for e, (x, c) in zip(encoders, seen, strict=True):
            t = embed(e, targets[name].image)
            values.append(float((c * t).sum() - (x * t).sum()))
        gains[name] = round(sum(values) / len(values), 4)
    best = max(sorted(gains), key=lambda n: gains[n])
    return targets[best], gains
