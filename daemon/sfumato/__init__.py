"""sfumato: cloak artwork against AI style mimicry before it is posted online."""

import os

# Worker threads that sleep instead of spinning while they wait: sfumato runs beside the user's
# own programs, and spinning OpenMP threads on a busy machine slow every process (measured here:
# one search step 14x slower with two busy neighbours). Set before torch is imported; a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
