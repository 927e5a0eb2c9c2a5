"""The ``annotation-pipeline`` command (contract in DESIGN.md).

Every command takes ``--json``; exits 0 on success, 1 on bad input (one line per problem on
stderr, no traceback), 2 on misuse (argparse's own exit code). Each command group is a module
of this package with a ``register(subparsers)``; they are imported here by name, so a missing
one is an import error, never a silently absent command.
"""

from __future__ import annotations

import argparse
import os
import sys

from annotation_pipeline.cli import anonymize, consensus, drift, intake, lifecycle
from annotation_pipeline.cli.common import CliError

COMMAND_GROUPS = [
    lifecycle,   # demo, releases, trace
    intake,      # intake
    consensus,   # consensus, agreement, merge-boxes
    drift,       # drift
    anonymize,   # anonymize
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotation-pipeline",
                                     description="Run and inspect the annotation lifecycle.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    for action in sub.choices.values():
        if not any(a.dest == "json" for a in action._actions):
            action.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and cut short: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented recipe
        return 0


if __name__ == "__main__":  # pragma: no cover
    # `python -m annotation_pipeline.cli.main` runs this file as __main__, a second copy whose
    # CliError is not the one the commands raise: hand over to the real module.
    from annotation_pipeline.cli.main import main as _main

    sys.exit(_main())
