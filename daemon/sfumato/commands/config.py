"""``sfumato config path|show|init|validate``: find, inspect, create and check the config file."""

from __future__ import annotations

import argparse
import os

import tomli_w

from sfumato.config import Config, config_to_dict, load_config
from sfumato.config_file import config_path, write_default_config
from sfumato.errors import ConfigError
from sfumato.folders import RESULT_ROLES, folder_problem


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="find, show, create or check the config file",
        description="The file: --config, else $SFUMATO_CONFIG, else the platform's config folder.",
    )
    parser.add_argument("--config", metavar="PATH", help="config file to use")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("path", help="print where the config file is (or would be)")
    actions.add_parser("show", help="print the effective config (file plus SFUMATO_... variables)")
    init = actions.add_parser("init", help="write the default config, with a comment per key")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    actions.add_parser("validate", help="check the config: exit 0, or 2 with one line per problem")
    for sub in actions.choices.values():
        sub.add_argument("--config", metavar="PATH", help=argparse.SUPPRESS, dest="sub_config")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = config_path(getattr(args, "sub_config", None) or args.config)  # before or after ACTION
    if args.action == "path":
        print(path)
        return 0
    if args.action == "init":
        write_default_config(path, force=args.force)
        print(f"wrote {path}")
        return 0
    given = getattr(args, "sub_config", None) or args.config
    explicit = bool(given or os.environ.get("SFUMATO_CONFIG"))
    # Without any config file, ``show`` describes the built-in defaults; ``validate`` fails.
    use_defaults = args.action == "show" and not explicit and not path.exists()
    config = load_config(None if use_defaults else path)  # ConfigError: exit 2, a line each
    if args.action == "show":
        print(tomli_w.dumps(config_to_dict(config)), end="")
        return 0
    problems = folder_problems(config)
    if problems:
        raise ConfigError("\n".join(f"{path}: {problem}" for problem in problems))
    print(f"{path}: ok ({len(config.folders)} folder(s))")
    return 0


def folder_problems(config: Config) -> list[str]:
    """Folders the daemon could not create or write (nothing is created to find out)."""
    problems = []
    state = folder_problem(config.daemon.state_dir, "state", create=False)
    if state:
        problems.append(f"daemon.state_dir: {state}")
    for index, folder in enumerate(config.folders):
        for role in ("outbox", *RESULT_ROLES):
            problem = folder_problem(getattr(folder, role), role, create=False)
            if problem:
                problems.append(f"folders[{index}].{role}: {problem}")
    return problems
