"""The machinery of table contracts: a column, a contract, the one missing-column check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd


class ContractError(ValueError):
    """A table does not match its contract; the message names table, column and problem."""


def missing_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` that ``frame`` lacks, in the order expected."""
    present = set(map(str, frame.columns))
    return [c for c in columns if c not in present]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str, hint: str | None = None) -> None:
    """Raise ContractError when ``frame`` lacks any of ``columns``: the one missing-column check.

    The message names ``what`` was read (a table, a file), the missing columns and the full
    list expected, then ``hint`` (what to do), so a user can fix the input without the code.
    """
    expected = list(columns)
    missing = missing_columns(frame, expected)
    if missing:
        message = f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(expected)}"
        raise ContractError(f"{message}; {hint}" if hint else message)


@dataclass(frozen=True)
class Column:
    dtype: str  # a pandas dtype string: "string", "float64", "Int64", "boolean", "object", ...
    description: str
    nullable: bool = False


@dataclass(frozen=True)
class TableContract:
    name: str
    description: str
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({n: pd.Series(dtype=c.dtype) for n, c in self.columns.items()})

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Select the contract's columns in order, cast dtypes, then validate."""
        require_columns(df, self.columns, self.name)
        out = pd.DataFrame(
            {n: df[n].astype(c.dtype) if str(df[n].dtype) != c.dtype else df[n]
             for n, c in self.columns.items()},
            index=df.index,
        ).reset_index(drop=True)
        self.validate(out)
        return out

    def validate(self, df: pd.DataFrame) -> None:
        require_columns(df, self.columns, self.name)
        problems = []
        for n, c in self.columns.items():
            if str(df[n].dtype) != c.dtype:
                problems.append(f"column {n!r} has dtype {df[n].dtype}, expected {c.dtype}")
            if not c.nullable and len(df) and df[n].isna().any():
                problems.append(f"column {n!r} has {int(df[n].isna().sum())} null(s) but is not nullable")
        if problems:
            raise ContractError(f"{self.name}: " + "; ".join(problems))

    def markdown(self) -> str:
        """A table of the contract for asset descriptions in the Dagster UI."""
        rows = [f"| `{n}` | {c.dtype}{'?' if c.nullable else ''} | {c.description} |"
                for n, c in self.columns.items()]
        return "| column | dtype | meaning |\n|---|---|---|\n" + "\n".join(rows)


def _c(dtype: str, description: str, nullable: bool = False) -> Column:
    return Column(dtype, description, nullable)


_BOX = {
    "x_min": _c("float64", "left edge, pixels", True),
    "y_min": _c("float64", "top edge, pixels", True),
    "x_max": _c("float64", "right edge, pixels", True),
    "y_max": _c("float64", "bottom edge, pixels", True),
}


def item_id_for_bytes(content: bytes) -> str:
    """Items are named by the hash of their bytes: the same file is the same item anywhere."""
    return hashlib.sha256(content).hexdigest()[:16]
