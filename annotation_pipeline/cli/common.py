"""What every command shares: bad-input errors, option types, input checks and output printing.

The command-line contract (DESIGN.md): ``--json`` prints strict JSON; bad input is one
``error:`` line per problem on stderr and exit 1; misuse, including an option value out of
range, is argparse's exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import ContractError, require_columns
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.settings import Settings, SettingsError, load_settings

MAX_PROBLEM_LINES = 20  # a file with thousands of bad rows must not bury the terminal


class CliError(Exception):
    """Bad input: each problem is printed as one line on stderr and the command exits 1."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = [one_line(p) for p in problems]


def one_line(text: str) -> str:
    """A message as one line: a multi-line library message would break "one line per problem"."""
    return " ".join(str(text).split())


def capped(problems: list[str], cap: int = MAX_PROBLEM_LINES) -> list[str]:
    """At most ``cap`` problems, then one line saying how many more there are."""
    if len(problems) <= cap:
        return problems
    return problems[:cap] + [f"... and {len(problems) - cap} more"]


def print_problems(problems: Iterable[str]) -> None:
    for problem in capped(list(problems)):
        print(f"error: {problem}", file=sys.stderr)


# ---------------------------------------------------------------- option types (misuse: exit 2)

def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def unit_interval_open_closed(text: str) -> float:
    """A threshold in (0, 1], such as an IoU: 0 would merge everything, above 1 nothing."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0, such as a noise level in pixels."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0.0 and value != float("inf")):  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str, option: str = "--date") -> str:
    """A YYYY-MM-DD day; a malformed one is bad input (exit 1), said in one line.

    Only that form: ``date.fromisoformat`` also takes 20261120 or 2026-W47-5, which name
    no partition folder."""
    try:
        if not _DAY.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise CliError(f"{option} {value!r}: expected YYYY-MM-DD") from None


# ---------------------------------------------------------------- inputs and outputs

def add_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="data root (default: $ANNOTATION_PIPELINE_ROOT, else ./data/runtime)")


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings, with ``--root`` (when the command has it) over ``$ANNOTATION_PIPELINE_ROOT``."""
    try:
        settings = load_settings(root=getattr(args, "root", None))
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    if settings.data_root.exists() and not settings.data_root.is_dir():
        raise CliError(f"{settings.data_root}: the data root is a file; pass --root DIR with a folder")
    return settings


def layout_for(args: argparse.Namespace) -> DataLayout:
    return DataLayout(settings_for(args).data_root)


def input_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file, or None. Checked before opening: a FIFO
    would block the command forever and a directory gives a library's own puzzling error."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{path}: file not found"
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return f"{path}: is a folder; expected a file"
    if not stat.S_ISREG(mode):
        return f"{path}: is not a regular file (a pipe or device); expected a file"
    return None


def check_input_file(path: Path) -> None:
    problem = input_file_problem(path)
    if problem:
        raise CliError(problem)


def check_output_file(path: Path) -> None:
    """Fail before the work, not after it, when the result could not be written."""
    if path.is_dir():
        raise CliError(f"{path}: is a folder; --output needs a file name")
    if not path.parent.is_dir():
        raise CliError(f"{path}: folder {path.parent} does not exist; create it first")


def read_csv(path: Path, required: Iterable[str], *, what: str = "", allow_empty: bool = False) -> pd.DataFrame:
    """A CSV as strings, with ``required`` columns filled on every row; every problem named.

    Line numbers are the file's (the header is line 1), as an editor shows them.
    """
    required = list(required)
    check_input_file(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise CliError(f"{path}: the file is empty; expected a CSV with header {','.join(required)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"{path}: not a readable UTF-8 CSV ({one_line(str(exc))})") from None
    try:
        require_columns(frame, required, str(path), f"expected a CSV with header {','.join(required)}")
    except ContractError as exc:
        raise CliError(str(exc)) from None
    if frame.empty and not allow_empty:
        raise CliError(f"{path}: no rows after the header; expected at least one {what or 'row'}")
    problems = [f"{path}: line {row + 2}: column {column} is empty"
                for row, column in _cells(frame[required].isna())]
    if problems:
        raise CliError(*problems)
    return frame


def numeric_columns(frame: pd.DataFrame, path: Path, columns: Iterable[str]) -> pd.DataFrame:
    """``columns`` as finite floats; CliError lists every cell that is not a number."""
    columns = list(columns)
    values = frame[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    problems = [f"{path}: line {row + 2}: column {column} is not a number ({frame[column].iloc[row]!r})"
                for row, column in _cells(~np.isfinite(values))]
    if problems:
        raise CliError(*problems)
    return frame.assign(**{c: values[c] for c in columns})


def _cells(mask: pd.DataFrame) -> list[tuple[int, str]]:
    """(row position, column) of every True cell, in file order: row by row, then column."""
    rows, cols = np.nonzero(mask.to_numpy(dtype=bool))
    return [(int(r), str(mask.columns[c])) for r, c in zip(rows, cols)]


# ---------------------------------------------------------------- output

def jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas scalars as Python ones and NaN, infinities and NA as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series, pd.Index)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return [jsonable(v) for v in items]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # Path, Decimal, ...: their text is what a reader wants


def to_json(result: Any) -> str:
    """Strict JSON (RFC 8259): ``allow_nan=False`` turns a NaN that slipped through into an error."""
    return json.dumps(jsonable(result), indent=2, allow_nan=False)


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print a command's result: strict JSON for machines, the ``human`` rendering otherwise."""
    print(to_json(result) if as_json else human(result))
