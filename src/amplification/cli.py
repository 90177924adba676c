"""The `amplification` command line: one subcommand group per concept, each a thin entry over
importable functions. Heavy imports (torch, mlflow) happen inside the commands that need them.

Every error a user can cause (a bad option, config or data file) ends in ONE line on stderr,
`amplification: error: ...`, and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand group -> module that defines `add_parser(subparsers)`; each registers its own
# commands with `set_defaults(func=...)`. Modules are imported only to build the parser.
GROUPS = [
    "amplification.commands.tasks_cmd",
]
OPTIONAL_GROUPS = [
    "amplification.commands.stages",
    "amplification.commands.study",
    "amplification.commands.demonstrate",
]


class UserError(Exception):
    """An error caused by the user's input; printed in one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amplification",
        description="Iterated Amplification: tasks, stages of the pipeline, study tools.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS + OPTIONAL_GROUPS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name in OPTIONAL_GROUPS and e.name == name:
                continue  # a group that is not built (yet) in this checkout
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .tasks.base import TaskError

    try:
        rc = args.func(args)
    except (TaskError, UserError, ValueError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"amplification: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("amplification: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
