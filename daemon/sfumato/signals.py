"""Signal handlers that only set flags: SIGTERM and SIGINT stop, SIGHUP reloads the config.

The main loop does the work, so a handler never runs daemon code between two of its lines.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[..., None]
Previous = dict[int, Any]


def install(on_stop: Handler, on_reload: Handler) -> Previous:
    """Our handlers, from the main thread only (elsewhere: none); returns the ones replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop}
    if hasattr(signal, "SIGHUP"):
        handlers[signal.SIGHUP] = on_reload
    return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}


def restore(previous: Previous) -> None:
    for signum, handler in previous.items():
        with contextlib.suppress(Exception):
            signal.signal(signum, handler)
