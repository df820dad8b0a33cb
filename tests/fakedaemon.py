"""``sfumato run`` in a real process with :class:`daemonkit.FakeCloaker` instead of the models.

``python tests/fakedaemon.py '{"crash": true}' --once --config PATH``: the first argument is the
cloaker's keyword arguments as JSON, the rest is ``sfumato run``'s command line. Everything else
(logging, the state-dir lock, signals, exit status) is the real command's, so tests can SIGKILL a
daemon mid-job without waiting for models to load.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sfumato.daemon  # noqa: E402
from daemonkit import FakeCloaker  # noqa: E402
from sfumato.cli import main  # noqa: E402

if __name__ == "__main__":
    options = json.loads(sys.argv[1])
    if options.get("calls_file"):
        options["calls_file"] = Path(options["calls_file"])
    cloaker = FakeCloaker(**options)
    sfumato.daemon._real_cloaker = cloaker
    sys.exit(main(["run", *sys.argv[2:]]))
