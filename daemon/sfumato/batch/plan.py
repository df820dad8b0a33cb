"""Which files of a source tree a batch cloaks, and under which names their results go."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sfumato.errors import UsageError
from sfumato.paths import is_image_name, is_temp_name
from sfumato.pipeline import INCOMPLETE_PREFIX

MANIFEST_NAME = "sfumato-manifest.jsonl"


@dataclass(frozen=True)
class BatchItem:
    """One input file: its path relative to SRC (posix), and why it cannot be cloaked, if known."""

    rel: str
    src: Path
    problem: str | None = None


def output_names(rel: str) -> tuple[str, str]:
    """The two names a file's result may take under DST: as it is, or marked incomplete."""
    path = PurePosixPath(rel)
    return rel, str(path.with_name(f"{INCOMPLETE_PREFIX}{path.name}"))


def plan_batch(src: Path, dst: Path) -> list[BatchItem]:
    """Every JPG/PNG under ``src`` (hidden and temp names skipped, ``dst`` skipped if inside it),
    sorted, so every run of the same tree hands out the same files in the same order."""
    src, dst = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder: sfumato batch takes a folder tree of images")
    if dst == src:
        raise UsageError("the output folder is the source folder: choose another DST")
    rels: list[str] = []
    for root, dirs, files in os.walk(src):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not is_temp_name(d) and here / d != dst)
        for name in files:
            if is_image_name(name) and not is_temp_name(name):
                rels.append((here / name).relative_to(src).as_posix())
    rels.sort()
    taken = set(rels)
    items = []
    for rel in rels:
        problem = None
        name = PurePosixPath(rel).name
        if name.startswith(INCOMPLETE_PREFIX):
            plain = str(PurePosixPath(rel).with_name(name[len(INCOMPLETE_PREFIX) :]))
            if plain in taken:
                problem = (
                    f"{rel}: its name is the one an incomplete cloak of {plain} gets; rename it to cloak both"
                )
        items.append(BatchItem(rel=rel, src=src / rel, problem=problem))
    if not items:
        raise UsageError(f"no input images: {src} holds no JPG or PNG files")
    return items


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
