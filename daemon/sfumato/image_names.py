"""Which file names are taken for pictures, in one set for every place that lists a folder: the
daemon's outboxes, ``sfumato cloak`` and ``sfumato batch`` on a folder, style reference folders.

A name only picks the candidates; the first bytes decide what a file is (images.sniffing), so
the rarer JPEG names (.jpe, .jfif, as Windows saves them) are taken too. Torch-free and
dependency-free, since the CLI reads it before it knows which command runs.
"""

from __future__ import annotations

from pathlib import PurePosixPath

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif"})


def is_image_name(name: str) -> bool:
    """Whether ``name`` (a file name or path) ends in one of :data:`IMAGE_SUFFIXES`, in any case."""
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
