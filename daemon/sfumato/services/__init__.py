"""Running the daemon as a per-user service: systemd on Linux, launchd on macOS.

Installing is expressed as a plan of steps (write a file, run a command) so that ``--dry-run``
can show exactly what a real install would do, and tests can run plans against fake commands.
"""
