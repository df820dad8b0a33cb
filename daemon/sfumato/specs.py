"""Encoder, style and poison specs, parsed once into typed values.

Torch-free, so the config's validation at the edge rejects a spec the engine could never load
(``nonsense:model``, ``effnet-lite:7``) with one sentence, instead of the daemon failing at start.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sfumato.errors import EncoderError, UnknownEncoderError, UsageError
from sfumato.options import BUILTIN_STYLES


class EncoderKind(Enum):
    """The scheme in front of a spec's first colon; each has its own loader in engine/encoders."""

    OPENCLIP = "openclip"
    EFFNET_LITE = "effnet-lite"
    TAE = "tae"


EFFNET_VARIANTS = ("0", "1", "2")
TAE_MODELS = ("flux2",)
# The project's own open_clip model configs (sfumato-tiny), beside open_clip's.
_OWN_OPENCLIP_CONFIGS = Path(__file__).parent / "engine" / "encoders" / "model_configs"


@dataclass(frozen=True)
class EncoderSpec:
    """``kind:model/tag`` or ``kind:model@path``; ``text`` is the spec as given (trimmed), the name
    reports and caches use."""

    kind: EncoderKind
    model: str
    tag: str | None = None
    path: Path | None = None
    text: str = ""

    @property
    def rest(self) -> str:
        """What follows the scheme, as the kind's loader reads it."""
        return self.text.partition(":")[2]


@functools.cache
def openclip_models() -> frozenset[str] | None:
    """open_clip's model names, read from its config files without importing it (that pulls in
    torch); None where open_clip is not installed, so the loader says which extra to install."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    folders = [Path(p) / "model_configs" for p in spec.submodule_search_locations]
    folders.append(_OWN_OPENCLIP_CONFIGS)
    return frozenset(f.stem for folder in folders if folder.is_dir() for f in folder.glob("*.json"))


# Schemes the search must never optimise against: the held-out latent judge (sfumato.verify.judge)
# only checks cloaks; a cloak computed against it would make its check meaningless.
NEVER_OPTIMISED = ("judge",)


def parse_encoder(text: str) -> EncoderSpec:
    """An encoder spec; raises UnknownEncoderError (unknown kind or model family) or EncoderError
    (a known model with a malformed rest), each in one sentence."""
    spec = str(text).strip()
    scheme, sep, rest = spec.partition(":")
    if scheme in NEVER_OPTIMISED:
        raise UnknownEncoderError(
            f"{spec!r} is the held-out latent judge: it only checks cloaks and is never optimised "
            "against, so it is no encoder to cloak or check with (sfumato check reports it on its own)"
        )
    kinds = {k.value: k for k in EncoderKind}
    if not sep or scheme not in kinds:
        known = ", ".join(f"{k}:..." for k in kinds)
        raise UnknownEncoderError(f"unknown encoder {spec!r}: use one of {known}")
    kind = kinds[scheme]
    if kind is EncoderKind.EFFNET_LITE:
        if rest.strip() not in EFFNET_VARIANTS:
            raise UnknownEncoderError(f"unknown encoder 'effnet-lite:{rest}': use effnet-lite:0, 1 or 2")
        return EncoderSpec(kind, rest.strip(), text=spec)
    if kind is EncoderKind.TAE:
        name, at, folder = rest.strip().partition("@")
        if name not in TAE_MODELS:
            raise UnknownEncoderError(f"unknown encoder 'tae:{rest}': use tae:flux2 or tae:flux2@DIR")
        if at and not folder:
            raise EncoderError("tae:flux2@ needs a folder after '@', or use plain tae:flux2")
        return EncoderSpec(kind, name, path=Path(folder).expanduser() if at else None, text=spec)
    return _openclip(rest, spec)


def _openclip(rest: str, spec: str) -> EncoderSpec:
    if "@" in rest:
        name, _, path = rest.partition("@")
        tag, where = None, Path(path).expanduser()
    else:
        name, sep, tag = rest.partition("/")
        where = None
        if not sep or not tag:
            raise EncoderError(
                f"encoder 'openclip:{rest}' needs a pretrained tag or a checkpoint: "
                f"openclip:{name}/TAG (for example openclip:ViT-B-32/laion2b_s34b_b79k), "
                f"openclip:{name}@FILE or openclip:{name}/random"
            )
    models = openclip_models()
    if models is not None and name not in models:
        raise UnknownEncoderError(
            f"unknown open_clip model {name!r}: see open_clip.list_models() for names "
            f"(the default is ViT-B-32)"
        )
    return EncoderSpec(EncoderKind.OPENCLIP, name, tag=tag, path=where, text=spec)


class StyleKind(Enum):
    """What a style names: a built-in stylizer, free text, a folder of references, the engine's
    choice (auto), or no style cloak at all (poison alone)."""

    BUILTIN = "builtin"
    TEXT = "text"
    FOLDER = "folder"
    AUTO = "auto"
    NONE = "none"


@dataclass(frozen=True)
class StyleRequest:
    """``value``: the stylizer's name, the text, the folder's absolute path, or auto/none."""

    kind: StyleKind
    value: str

    @property
    def label(self) -> str:
        """The name the report gives and a caller can pass back as ``style`` to get the same target."""
        return self.value


def parse_style(style: str | None) -> StyleRequest:
    """A style as ``--style`` and the config take it; a path-like text must be an existing folder."""
    text = (style or "auto").strip()
    if not text:
        raise UsageError("style is empty: give a built-in style, free text, a folder or auto")
    lowered = text.lower()
    if lowered == "auto":
        return StyleRequest(StyleKind.AUTO, "auto")
    if lowered == "none":
        return StyleRequest(StyleKind.NONE, "none")
    if lowered in BUILTIN_STYLES:
        return StyleRequest(StyleKind.BUILTIN, lowered)
    path = Path(text).expanduser()
    if path.is_dir():
        return StyleRequest(StyleKind.FOLDER, str(path.resolve()))
    if any(sep in text for sep in ("/", "\\")) and not path.exists():
        raise UsageError(f"style folder {text} does not exist")
    return StyleRequest(StyleKind.TEXT, text)


@dataclass(frozen=True)
class PoisonRequest:
    """``concept``/``target``: concept names, or "auto" for the engine to choose."""

    concept: str
    target: str

    def __str__(self) -> str:
        return f"{self.concept}:{self.target}"


def parse_poison(text: str) -> PoisonRequest:
    """``CONCEPT:TARGET`` (either may be ``auto``; a bare ``CONCEPT`` means ``CONCEPT:auto``)."""
    concept, _, target = (text or "").partition(":")
    concept, target = concept.strip() or "auto", target.strip() or "auto"
    if concept.lower() == "auto":
        concept = "auto"
    if target.lower() == "auto":
        target = "auto"
    if concept != "auto" and concept.lower() == target.lower():
        raise UsageError(f"poison {text!r} names the same concept twice: the target must differ")
    return PoisonRequest(concept, target)


def parse_checked_poison(text: str) -> PoisonRequest:
    """What ``check --poison`` takes: ``CONCEPT:TARGET`` or just ``TARGET``; the target must be
    named, since a check cannot know which one an auto poison chose."""
    request = parse_poison(text) if ":" in text else PoisonRequest("auto", text.strip() or "auto")
    if request.target == "auto":
        raise UsageError(f"--poison {text!r} needs the target concept to check, e.g. cow:handbag")
    return request
