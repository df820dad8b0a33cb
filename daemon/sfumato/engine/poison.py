"""Poisoning, in the spirit of Nightshade: a person still sees the concept, a model the target.

Poison works by many images agreeing, so everything here is deterministic: the concept is
detected zero-shot over a fixed vocabulary, and an ``auto`` target is a hash-seeded pick among the
vocabulary entries farthest from the concept, so the same concept always maps to the same target.

Scores handed to the optimiser are per view, to maximise, on the style term's 0-1 scale:

- classifiers (ImageNet heads): the margin of the target logit over the best other class, on
  logits averaged over the ensemble (averaged logits transfer best), divided by ``MARGIN_SCALE``
  and capped at 1 so views that are already won stop pulling; plus, weighted by
  ``FEATURE_WEIGHT``, the cosine of the pooled features with the target's row of the head (its
  concept embedding): moving the features themselves transfers to unseen models better than the
  logits alone; the sum is divided by ``1 + FEATURE_WEIGHT``;
- text towers (CLIP): the zero-shot probability of the target against the source concept.

Targeted transfer to unseen classifiers is the hard part: each step, the classifiers are randomly
varied copies of themselves (``Encoder.varied``), so the poison cannot rest on one model's quirks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sfumato.engine.encoders.base import Encoder
from sfumato.engine.objectives import view_batch
from sfumato.engine.views import View, ViewSampler
from sfumato.errors import EncoderError, UsageError
from sfumato.specs import PoisonRequest  # parsed by sfumato.specs, the one poison-spec parser

# Open-vocabulary encoders (CLIP) detect and pick among these everyday concepts.
COMMON_CONCEPTS: tuple[str, ...] = (
    "person", "man", "woman", "child", "face", "crowd", "dog", "cat", "horse", "cow", "sheep",
    "pig", "goat", "chicken", "bird", "duck", "owl", "fish", "whale", "butterfly", "bee",
    "snake", "frog", "lion", "tiger", "bear", "elephant", "giraffe", "zebra", "monkey",
    "rabbit", "deer", "fox", "wolf", "house", "church", "castle", "bridge", "tower", "city",
    "street", "village", "farm", "garden", "park", "tree", "forest", "flower", "sunflower",
    "rose", "field", "wheat", "grass", "mountain", "hill", "river", "lake", "sea", "beach",
    "island", "sky", "cloud", "sun", "moon", "stars", "night", "snow", "rain", "desert",
    "car", "truck", "bus", "train", "bicycle", "motorcycle", "airplane", "boat", "ship",
    "chair", "table", "bed", "sofa", "lamp", "clock", "vase", "bottle", "cup", "bowl",
    "fruit", "apple", "banana", "orange", "bread", "cake", "pizza", "handbag", "shoe", "hat",
    "umbrella", "guitar", "piano", "book", "computer", "phone", "toaster", "skull", "robot",
)  # fmt: skip
FARTHEST_POOL = 8  # an auto target is drawn from this many concepts farthest from the source
MARGIN_SCALE = 30.0  # logits: a margin this large counts as fully poisoned (score 1)
FEATURE_WEIGHT = 3.0  # weight of the feature-to-class-row cosine beside the capped margin
TEXT_LOGIT_SCALE = 100.0  # CLIP's own temperature for zero-shot probabilities
TOP_K = 5  # targeted success: the target is among the top-5 predictions
VARIATION_SEED = 20200  # the classifiers' random variations during the search (Encoder.varied)


def concept_encoders(encoders: Sequence[Encoder]) -> list[Encoder]:
    """The ensemble members that can name concepts (text towers, classifier heads)."""
    able = [e for e in encoders if e.supports_text or e.supports_classes]
    if not able:
        specs = ", ".join(e.spec for e in encoders)
        raise EncoderError(
            f"poisoning needs an encoder that knows concepts (openclip:... or effnet-lite:...), "
            f"but the ensemble is only {specs}"
        )
    return able


def vocabulary(encoders: Sequence[Encoder]) -> tuple[str, ...]:
    """Concepts every member can embed: a classifier's closed list if there is one, else ours."""
    for enc in concept_encoders(encoders):
        closed = enc.concept_vocabulary()
        if closed is not None:
            return tuple(closed)
    return COMMON_CONCEPTS


_EMBEDDINGS: dict[tuple[int, tuple[str, ...]], torch.Tensor] = {}


def concept_matrix(encoder: Encoder, names: Sequence[str]) -> torch.Tensor:
    """Unit concept embeddings (one row per name), cached per encoder: CLIP's text tower is slow."""
    key = (id(encoder), tuple(names))
    if key not in _EMBEDDINGS:
        with torch.no_grad():
            _EMBEDDINGS[key] = F.normalize(encoder.embed_concepts(list(names)).float(), dim=-1)
    return _EMBEDDINGS[key]


def _is_classifier(encoder: Encoder) -> bool:
    return encoder.supports_classes and hasattr(encoder, "logits")


def _resolve(names: Sequence[str], name: str) -> str:
    """The vocabulary's own spelling of ``name`` (case-insensitive), or ``name`` itself."""
    lowered = {n.lower(): n for n in names}
    return lowered.get(name.strip().lower(), name.strip())


def concept_scores(encoder: Encoder, images: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Per-image logits over ``names`` (B×N): the class head, or CLIP's scaled cosine."""
    if _is_classifier(encoder):
        full = encoder.concept_vocabulary()
        index = {n.lower(): i for i, n in enumerate(full)}
        rows = [index.get(n.lower()) for n in names]
        if any(r is None for r in rows):
            missing = next(n for n, r in zip(names, rows, strict=True) if r is None)
            raise EncoderError(f"encoder {encoder.spec} knows only ImageNet class names, not {missing!r}")
        return encoder.logits(images).float()[:, rows]
    emb = F.normalize(encoder.embed(images).float(), dim=-1)
    return TEXT_LOGIT_SCALE * emb @ concept_matrix(encoder, names).T


def _detection_views(image: torch.Tensor, count: int = 4) -> list[View]:
    sampler = ViewSampler(image.shape[-2], image.shape[-1], seed=104729)
    return [sampler.sample(mild=True)] + [sampler.sample() for _ in range(count - 1)]


def concept_probabilities(
    encoders: Sequence[Encoder], image: torch.Tensor, names: Sequence[str]
) -> torch.Tensor:
    """Zero-shot probabilities over ``names``, averaged over a few fixed views and the members."""
    views = _detection_views(image)
    with torch.no_grad():
        probs = [
            concept_scores(e, view_batch(e, image, views)[0], names).softmax(-1).mean(0)
            for e in concept_encoders(encoders)
        ]
    return torch.stack(probs).mean(0)


def detect_concept(encoders: Sequence[Encoder], image: torch.Tensor) -> tuple[str, float]:
    """What the image shows, with its softmax confidence, over :func:`vocabulary`."""
    names = vocabulary(encoders)
    probs = concept_probabilities(encoders, image, names)
    best = int(probs.argmax())
    return names[best], float(probs[best])


def auto_target(encoders: Sequence[Encoder], concept: str) -> str:
    """A concept far from ``concept`` in the first member's concept space, the same every time.

    The pool of the farthest entries makes the target unmistakably different; the hash of the
    concept's name picks within it, so unrelated concepts do not all pile onto one target.
    """
    names = vocabulary(encoders)
    encoder = concept_encoders(encoders)[0]
    matrix = concept_matrix(encoder, names)
    source = _resolve(names, concept)
    known = source in names
    anchor = matrix[names.index(source)] if known else concept_matrix(encoder, [source])[0]
    similarity = [round(s, 4) for s in (matrix @ anchor).tolist()]  # ties break by name
    ranked = sorted((s, n) for s, n in zip(similarity, names, strict=True) if n.lower() != source.lower())
    pool = [n for _, n in ranked[:FARTHEST_POOL]]
    digest = hashlib.sha256(source.lower().encode("utf-8")).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


class ClassTargetTerm:
    """Push the ensemble-averaged logits toward ``target`` (capped margin, see module doc)."""

    def __init__(self, encoders: Sequence[Encoder], target: str) -> None:
        self.encoders = [e for e in encoders if _is_classifier(e)]
        names = self.encoders[0].concept_vocabulary()
        index = {n.lower(): i for i, n in enumerate(names)}
        if target.lower() not in index:
            raise EncoderError(
                f"poison target {target!r} is not an ImageNet class, which encoder "
                f"{self.encoders[0].spec} needs (for example 'purse', 'ox', 'umbrella')"
            )
        self.target = target
        self.index = index[target.lower()]
        self.encoder = self.encoders[0]
        self.rows = [F.normalize(e.embed_concepts([target])[0].float(), dim=0) for e in self.encoders]
        # Each call (one search step) sees its own variation of the classifiers; the fixed seed
        # keeps a poison reproducible.
        self.variation = torch.Generator().manual_seed(VARIATION_SEED)

    def shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        logits, alignment = [], []
        for enc, row in zip(self.encoders, self.rows, strict=True):
            with enc.varied(self.variation):
                features = enc.embed(*view_batch(enc, cloaked, views))
            logits.append(enc.model._fc(features).float())  # the head, on features computed once
            alignment.append(F.normalize(features.float(), dim=-1) @ row)
        mean = torch.stack(logits).mean(0)
        others = mean.clone()
        others[:, self.index] = float("-inf")
        margin = mean[:, self.index] - others.max(-1).values
        score = margin.clamp(max=MARGIN_SCALE) / MARGIN_SCALE + FEATURE_WEIGHT * torch.stack(alignment).mean(
            0
        )
        return score / (1 + FEATURE_WEIGHT)


class TextTargetTerm:
    """Move a text tower's view of the image from the source concept to the target's text."""

    def __init__(self, encoder: Encoder, source: str, target: str) -> None:
        self.encoder = encoder
        self.source, self.target = source, target
        self.anchors = concept_matrix(encoder, [source, target])

    def shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        emb = F.normalize(self.encoder.embed(*view_batch(self.encoder, cloaked, views)).float(), dim=-1)
        return (TEXT_LOGIT_SCALE * emb @ self.anchors.T).softmax(-1)[:, 1]


def poison_terms(encoders: Sequence[Encoder], concept: str, target: str) -> list:
    """One averaged term for all classifiers (they share the class list), one per text tower."""
    able = concept_encoders(encoders)
    terms: list = []
    if any(_is_classifier(e) for e in able):
        terms.append(ClassTargetTerm(able, target))
    terms.extend(TextTargetTerm(e, concept, target) for e in able if not _is_classifier(e))
    return terms


@dataclass
class WeightedTerm:
    """A term whose score counts ``weight`` times in the optimiser's plain average of terms."""

    term: object
    weight: float

    @property
    def encoder(self) -> Encoder:
        return self.term.encoder

    def shift(self, cloaked: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
        return self.weight * self.term.shift(cloaked, views)


def targeted_success(encoders: Sequence[Encoder], image: torch.Tensor, target: str) -> dict:
    """Surrogate check on the cloaked image: the target's rank among the vocabulary, per member."""
    names = vocabulary(encoders)
    if target not in names:
        names = (*names, target)
    views = _detection_views(image, count=1)
    ranks = {}
    with torch.no_grad():
        for enc in concept_encoders(encoders):
            scores = concept_scores(enc, view_batch(enc, image, views)[0], names)[0]
            ranks[enc.spec] = int((scores > scores[names.index(target)]).sum()) + 1
    hits = [r <= TOP_K for r in ranks.values()]
    return {"targeted_success": round(sum(hits) / len(hits), 3), "target_rank": ranks}


# With the style cloak on too, one search serves both: the optimiser averages its terms, so the
# style terms together get 1 - POISON_SHARE of the objective and the poison terms POISON_SHARE.
POISON_SHARE = 0.5


def combine_terms(style_terms: Sequence, poison: Sequence) -> list:
    """Weight the two goals so each gets its documented share whatever the term counts."""
    if not style_terms or not poison:
        return [*style_terms, *poison]
    total = len(style_terms) + len(poison)
    style_weight = (1 - POISON_SHARE) * total / len(style_terms)
    poison_weight = POISON_SHARE * total / len(poison)
    return [WeightedTerm(t, style_weight) for t in style_terms] + [
        WeightedTerm(t, poison_weight) for t in poison
    ]


@dataclass
class PoisonPlan:
    """What one image is poisoned from and to, and the terms that do it."""

    concept: str
    confidence: float | None
    target: str
    concept_auto: bool
    target_auto: bool
    terms: list

    def report(self) -> dict:
        return {
            "concept": self.concept,
            "concept_confidence": None if self.confidence is None else round(self.confidence, 4),
            "concept_auto": self.concept_auto,
            "target": self.target,
            "target_auto": self.target_auto,
        }


def plan_poison(
    encoders: Sequence[Encoder],
    image: torch.Tensor,
    request: PoisonRequest,
    known_targets: Mapping[str, str] | None = None,
) -> PoisonPlan:
    """Resolve ``CONCEPT:TARGET`` for this image; ``known_targets`` (concept → target, from the
    daemon's ledger) keeps an auto target stable even if the ensemble changes."""
    names = vocabulary(encoders)
    if request.concept == "auto":
        concept, confidence = detect_concept(encoders, image)
    else:
        concept = _resolve(names, request.concept)
        confidence = None
        if concept in names:
            probs = concept_probabilities(encoders, image, names)
            confidence = float(probs[names.index(concept)])
    if request.target == "auto":
        known = {k.lower(): v for k, v in (known_targets or {}).items()}
        target = known.get(concept.lower()) or auto_target(encoders, concept)
    else:
        target = _resolve(names, request.target)
    if target.lower() == concept.lower():
        raise UsageError(f"the image already shows {concept!r}: choose another poison target")
    terms = poison_terms(encoders, concept, target)
    return PoisonPlan(concept, confidence, target, request.concept == "auto", request.target == "auto", terms)
