"""The ``annotation-pipeline`` command (contract in DESIGN.md).

Every command takes ``--json``; exits 0 on success, 1 on bad input (one line per problem on
stderr, no traceback), 2 on misuse (argparse's own exit code). Commands live in the domain
modules' ``cli_*`` companions and register themselves through ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any


class CliError(Exception):
    """Bad input: each problem is printed as one line on stderr and the command exits 1."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def default_root() -> Path:
    return Path(os.environ.get("ANNOTATION_PIPELINE_ROOT", "./data/runtime"))


def add_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="data root (default: $ANNOTATION_PIPELINE_ROOT, else ./data/runtime)")


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print a command's result: JSON for machines, the ``human`` rendering otherwise."""
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(human(result))


# Modules that define ``register(subparsers)``; each added parser sets ``func(args) -> int``.
COMMAND_MODULES = [
    "annotation_pipeline.cli_lifecycle",   # demo, releases, trace
    "annotation_pipeline.cli_intake",      # intake
    "annotation_pipeline.cli_consensus",   # consensus, agreement, merge-boxes
    "annotation_pipeline.cli_drift",       # drift
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotation-pipeline",
                                     description="Run and inspect the annotation lifecycle.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
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
    # `python -m annotation_pipeline.cli` runs this file as __main__, a second copy of the
    # module whose CliError is not the one the commands raise: hand over to the real module.
    from annotation_pipeline.cli import main as _main

    sys.exit(_main())
