"""``sfumato service install|uninstall|status``: run the daemon at login (systemd, launchd)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from sfumato.errors import UsageError
from sfumato.services import launchd, systemd
from sfumato.services.context import (
    PLATFORMS,
    Platform,
    absolute_config_path,
    current_platform,
    launchd_log_file,
    sfumato_program,
)
from sfumato.services.steps import Call, Runner, Step, carry_out, run_command, show

NOT_RUNNING = 3  # like `systemctl is-active`


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "service",
        help="run sfumato in the background from login on (systemd or launchd)",
        description="Install, remove or check the per-user service that runs `sfumato run`.",
    )
    actions = parser.add_subparsers(dest="service_action", metavar="ACTION", required=True)

    install = actions.add_parser("install", help="install and start the service")
    install.add_argument("--config", metavar="PATH", help="config file the service uses")
    uninstall = actions.add_parser("uninstall", help="stop and remove the service")
    for action in (install, uninstall):
        action.add_argument(
            "--dry-run",
            action="store_true",
            help="print every file it would write and every command it would run; change nothing",
        )
    status = actions.add_parser("status", help="say whether the service runs")
    for action in (install, uninstall, status):
        action.add_argument(
            "--platform",
            choices=PLATFORMS,
            default=current_platform(),
            help="service manager to target (default: this machine's)",
        )
    install.set_defaults(func=lambda args: install_service(args.platform, args.config, args.dry_run))
    uninstall.set_defaults(func=lambda args: uninstall_service(args.platform, args.dry_run))
    status.set_defaults(func=lambda args: service_status(args.platform))


def _check_platform(platform: Platform | None, dry_run: bool) -> Platform:
    if platform is None:
        raise UsageError(
            "sfumato runs as a service only on Linux (systemd) and macOS (launchd); "
            "use --platform linux|macos --dry-run to see the files"
        )
    if not dry_run and platform != current_platform():
        raise UsageError(f"a {platform} service can only be installed on {platform}; add --dry-run")
    return platform


def _config_setup(path: Path, explicit: str | None, platform: Platform) -> list[Step]:
    """Check the config now rather than have the service fail in a restart loop later.

    ``sfumato run --config`` never creates a missing file, so the first-run setup that a bare
    ``sfumato run`` does (default config and folders) becomes a step of the install instead.
    """
    if platform != current_platform():
        return []  # another machine's file: nothing to check here
    from sfumato.config import load_config
    from sfumato.config_file import load_or_create

    if path.exists() or explicit or os.environ.get("SFUMATO_CONFIG"):
        load_config(path)  # ConfigError names the file and the problem
        return []
    return [
        Call(
            f"create the default config at {path}, and its folders",
            lambda: load_or_create(path)[1],
        )
    ]


def _apply(steps: list[Step], dry_run: bool, runner: Runner, out: TextIO | None, done: str) -> int:
    """Print every step (``dry_run``), or carry them out and then say ``done``."""
    out = out or sys.stdout
    if dry_run:
        show(steps, out)
        return 0
    carry_out(steps, runner, out)
    print(done, file=out)
    return 0


def install_service(
    platform: Platform | None,
    config: str | None,
    dry_run: bool,
    runner: Runner = run_command,
    out: TextIO | None = None,
) -> int:
    """Write the unit or plist and start it; with ``dry_run`` only print what that would do."""
    platform = _check_platform(platform, dry_run)
    program = sfumato_program()
    config_path = absolute_config_path(config, platform)
    setup = _config_setup(config_path, config, platform)
    if platform == "linux":
        steps: list[Step] = systemd.install_steps(program, config_path, setup)
        logs = "journalctl --user -u sfumato -f"
    else:
        log_file = launchd_log_file()
        steps = launchd.install_steps(program, config_path, log_file, setup)
        logs = str(log_file)
    done = f"sfumato now runs in the background and starts at every login; logs: {logs}"
    return _apply(steps, dry_run, runner, out, done)


def uninstall_service(
    platform: Platform | None,
    dry_run: bool,
    runner: Runner = run_command,
    out: TextIO | None = None,
) -> int:
    """Stop the service and remove its file; nothing to do if it is not installed."""
    if _check_platform(platform, dry_run) == "linux":
        path: Path = systemd.unit_path()
        steps = systemd.uninstall_steps()
    else:
        path = launchd.plist_path()
        steps = launchd.uninstall_steps()
    if not path.exists():
        print(f"sfumato is not installed as a service ({path} does not exist)", file=out or sys.stdout)
        return 0
    done = "sfumato no longer runs as a service; your folders and config are untouched"
    return _apply(steps, dry_run, runner, out, done)


def service_status(platform: Platform | None, runner: Runner = run_command, out: TextIO | None = None) -> int:
    """Print whether the service runs; exit status 0 if it does, 3 if not."""
    out = out or sys.stdout
    platform = _check_platform(platform, dry_run=False)
    if platform == "linux":
        running, sentence = systemd.status(runner)
    else:
        running, sentence = launchd.status(runner, launchd_log_file())
    print(sentence, file=out)
    return 0 if running else NOT_RUNNING
