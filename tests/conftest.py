"""Test-wide settings, applied before any test module imports torch."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see sfumato/__init__.py
