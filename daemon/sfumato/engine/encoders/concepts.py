"""Prompt templates for concept embeddings: averaged over templates, as zero-shot CLIP does."""

from __future__ import annotations

# A short list mixing object and style phrasings: style targets ("pixel art") and poison concepts
# ("a cow") are both embedded with it.
CONCEPT_TEMPLATES: tuple[str, ...] = (
    "{}.",
    "a picture of {}.",
    "a painting of {}.",
    "an artwork in the style of {}.",
    "a photo of {}.",
    "a drawing of {}.",
    "an image of {}.",
)


def imagenet_classnames() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in index order, in CLIP's cleaned-up wording ("purse", "ox")."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)
