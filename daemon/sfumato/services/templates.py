"""The unit and plist templates from the top-level ``service/`` folder.

In a wheel they are ``sfumato/service_templates/`` (hatch force-include); in a source checkout
they are read from ``service/`` next to ``daemon/``.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path

SYSTEMD_UNIT = "sfumato.service"
LAUNCHD_PLIST = "org.sfumato.daemon.plist"


class Placeholders(string.Template):
    """Only ``@{name}`` is a placeholder: ``$``, ``%`` and a bare ``@`` mean things to systemd."""

    flags = 0
    pattern = r"""
        @(?:
            (?P<escaped>(?!))           # no escape needed: only @{ is special
          | (?P<named>(?!))             # no bare @name form
          | \{(?P<braced>[a-z_]+)\}
          | (?P<invalid>\{)             # @{ with something odd inside
        )
    """


def template_bytes(name: str) -> bytes:
    packaged = resources.files("sfumato") / "service_templates" / name
    if packaged.is_file():
        return packaged.read_bytes()
    return (Path(__file__).resolve().parents[3] / "service" / name).read_bytes()
