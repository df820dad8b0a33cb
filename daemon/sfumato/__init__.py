"""sfumato: cloak artwork against AI style mimicry before it is posted online."""

__version__ = "0.1.0"
