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

from annotation_pipeline.cli import anonymize, consensus, diff, drift, intake, lifecycle, verify
from annotation_pipeline.cli.common import CliError, one_line, print_problems
from annotation_pipeline.contracts import ContractError
from annotation_pipeline.settings import SettingsError

COMMAND_GROUPS = [
    lifecycle,   # demo, releases, trace
    intake,      # intake
    consensus,   # consensus, agreement, merge-boxes
    drift,       # drift
    diff,        # diff
    verify,      # verify
    anonymize,   # anonymize
]

DESCRIPTION = """\
Run and inspect the annotation lifecycle from the command line.

Exit codes: 0 success, 1 bad input (one "error:" line per problem on stderr),
2 misuse (unknown option, value out of range). Every command takes --json.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotation-pipeline", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected failure, show Python's traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    for action in sub.choices.values():
        if not any(a.dest == "json" for a in action._actions):
            action.add_argument("--json", action="store_true", help="print strict JSON (no NaN: null)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print_problems(exc.problems)
    except (ContractError, SettingsError) as exc:  # the message already says what and what to do
        print_problems([one_line(str(exc))])
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # output piped into `head` and cut short: not our error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented recipe
            return 0
        where = f"{exc.filename}: " if exc.filename else ""
        print_problems([f"{where}{exc.strerror or one_line(str(exc))}"])
    except KeyboardInterrupt:
        print_problems(["interrupted"])
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: a user never sees a traceback
        if args.debug:
            raise
        print_problems([f"unexpected {type(exc).__name__}: {one_line(str(exc)) or 'no message'} "
                        "(rerun with --debug before the command to see the traceback; please report it)"])
    return 1


if __name__ == "__main__":  # pragma: no cover
    # `python -m annotation_pipeline.cli.main` runs this file as __main__, a second copy whose
    # CliError is not the one the commands raise: hand over to the real module.
    from annotation_pipeline.cli.main import main as _main

    sys.exit(_main())
