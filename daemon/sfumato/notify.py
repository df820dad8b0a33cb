"""Tell a supervising systemd how the daemon is doing (the sd_notify protocol, stdlib only).

With ``Type=notify`` systemd only considers the service started once it hears ``READY=1``, shows
``STATUS=`` lines in ``systemctl status``, and restarts the daemon if watchdog pings stop while
``WatchdogSec=`` is set. Outside systemd (no ``$NOTIFY_SOCKET``) every function is a cheap no-op
returning False, so callers never need to check where they run. Sending never raises: a lost
status message must not take down a cloaking job.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

__all__ = [
    "notify",
    "notify_ready",
    "notify_reloading",
    "notify_status",
    "notify_stopping",
    "watchdog_interval",
    "watchdog_ping",
]


def _socket_address() -> str | None:
    """The socket from ``$NOTIFY_SOCKET``; a leading ``@`` names a Linux abstract socket."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    log.debug("ignoring unsupported NOTIFY_SOCKET %r", address)  # e.g. vsock:, not used for us
    return None


def notify(*lines: str) -> bool:
    """Send ``KEY=value`` lines to systemd in one datagram; True only if it was sent."""
    address = _socket_address()
    if address is None or not lines:
        return False
    message = "\n".join(lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except (OSError, ValueError) as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def notify_ready() -> bool:
    """Models are loaded and folders watched: systemd may now report the service as started."""
    return notify("READY=1")


def notify_status(text: str) -> bool:
    """Free-form one-line status (e.g. the current job) shown by ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def notify_stopping() -> bool:
    """Shutting down on purpose, so systemd does not mistake a slow exit for a hang."""
    return notify("STOPPING=1")


def notify_reloading() -> bool:
    """Re-reading the config (after SIGHUP); send ``notify_ready()`` again when done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def watchdog_ping() -> bool:
    """Prove the daemon is alive; call at least every ``watchdog_interval() / 2`` seconds."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds after which systemd kills a silent daemon, or None when no watchdog is set.

    Honours ``$WATCHDOG_PID``: if it names another process the watchdog is not ours.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        interval = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return interval / 1_000_000 if interval > 0 else None
