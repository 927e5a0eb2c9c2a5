"""What every stage's wiring shares: the partitions, owners and metadata helpers."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import TableContract

# Nightly runs process the day that just ended; backfills reach back to the program's start.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01")

OWNERS = ["team:annotation-platform"]

# The Dagster UI shows text and Markdown metadata in a fixed-width cell and cuts what runs past
# it (issue #22: wide scorecards and previews lost their right-hand columns); 120 characters fit
# at the UI's default font on a laptop screen.
UI_LINE_WIDTH = 120
# A preview shows what a table holds, not whole values: a long cell (annotation id lists, JSON
# sidecars, paths) is clipped with an ellipsis, the full value stays in the table.
PREVIEW_CELL_CHARS = 48


def column_schema(contract: TableContract, df: pd.DataFrame | None = None) -> dg.TableSchema:
    """The columns of ``df`` (default: all of the contract's) with their dtype, and their meaning
    and nullability from ``contract``.

    A column the contract does not describe is a wiring mistake (the frame did not go through
    ``contract.conform``), so it raises instead of showing the UI an empty description.
    """
    dtypes = ({n: c.dtype for n, c in contract.columns.items()} if df is None
              else {c: str(t) for c, t in df.dtypes.items()})
    unknown = [str(c) for c in dtypes if c not in contract.columns]
    if unknown:
        raise ValueError(f"{contract.name}: column(s) {', '.join(unknown)} are not in the contract; "
                         f"conform the frame with {contract.name.upper()}.conform first")
    return dg.TableSchema(columns=[
        dg.TableColumn(name=str(c), type=t, description=contract.columns[c].description,
                       constraints=dg.TableColumnConstraints(nullable=contract.columns[c].nullable))
        for c, t in dtypes.items()])


def contract_metadata(contract: TableContract) -> dict:
    """Definition metadata of a table asset: the UI lists its columns before anything is materialized."""
    return {"dagster/column_schema": column_schema(contract)}


def _preview(df: pd.DataFrame, rows: int) -> pd.DataFrame:
    head = df.head(rows)
    # binary columns (WKB geometry) do not print; judged on the first non-null value of the head
    binary = [c for c in head.columns if head[c].dtype == object
              and len(non_null := head[c].dropna()) and isinstance(non_null.iloc[0], (bytes, bytearray))]
    head = head.drop(columns=binary)
    text = head.astype(str)
    long = text.apply(lambda col: col.str.len() > PREVIEW_CELL_CHARS)
    return head.astype(object).mask(long, text.apply(lambda col: col.str.slice(0, PREVIEW_CELL_CHARS - 1) + "…"))


def table_metadata(df: pd.DataFrame, contract: TableContract, preview_rows: int = 5, **extra) -> dict:
    """Row count, schema (every column described by its contract) and a small preview: what a
    data engineer looks for first in the UI."""
    preview = _preview(df, preview_rows)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": column_schema(contract, df),
        "preview": dg.MetadataValue.md(
            fit_markdown(preview.to_markdown(index=False)) if len(preview) else "(empty)"),
        **extra,
    }


def counts_metadata(received: int, accepted: int, quarantined: int, **other: int) -> dict:
    """The reconciliation every stage reports: received = accepted + quarantined (+ other)."""
    total = accepted + quarantined + sum(other.values())
    if total != received:
        raise dg.Failure(f"counts do not reconcile: received {received} != accepted {accepted} + "
                         f"quarantined {quarantined} + {other}")
    return {"received": received, "accepted": accepted, "quarantined": quarantined,
            **{k: v for k, v in other.items()}, "reconciled": True}


# ---- metadata the UI shows whole: every line of text and Markdown at most UI_LINE_WIDTH

def ui_metadata(metadata: Mapping[str, object], root: str | Path | None = None,
                width: int = UI_LINE_WIDTH) -> dict:
    """``metadata`` with every text and Markdown value fitted to ``width`` characters a line.

    Plain strings and text values are wrapped at spaces; Markdown keeps its structure (paragraphs
    and list items re-wrapped, wide tables split into narrower tables that repeat the first
    column, or a list when even that is too wide; images untouched). Paths under ``root`` in the
    text read ``ROOT/...``. Path, URL, JSON and number values pass as they are: the UI gives a
    path a copy button, and JSON is data a script may read.
    """
    out = {}
    for key, value in metadata.items():
        if isinstance(value, str):
            value = dg.MetadataValue.text(fit_text(value, root, width))
        elif isinstance(value, dg.TextMetadataValue):
            value = dg.MetadataValue.text(fit_text(value.text, root, width))
        elif isinstance(value, dg.MarkdownMetadataValue):
            value = dg.MetadataValue.md(fit_markdown(value.md_str, root, width))
        out[key] = value
    return out


def _relative_to_root(text: str, root: str | Path | None) -> str:
    if root is None:
        return text
    prefix = str(root).rstrip("/")
    # the root itself or a path under it, not a sibling folder that merely starts with its name
    return re.sub(re.escape(prefix) + r"(?![\w.\-])", "ROOT", text) if prefix else text


def fit_text(text: str, root: str | Path | None = None, width: int = UI_LINE_WIDTH) -> str:
    """Plain text wrapped at single spaces, its line breaks kept. Reversible: joining the lines
    of a one-line text with spaces gives it back (the demo command prints some of these values
    on one line). A word longer than a line (a path outside the root) stays whole."""
    lines = []
    for line in _relative_to_root(text, root).split("\n"):
        current = None
        for word in line.split(" "):
            if current is None:
                current = word
            elif len(current) + 1 + len(word) <= width:
                current += " " + word
            else:
                lines.append(current)
                current = word
        lines.append(current)
    return "\n".join(lines)


_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_PIPE = re.compile(r"(?<!\\)\|")
_LIST_ITEM = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)")
_IMAGE = re.compile(r"^\s*!\[[^\]]*\]\(data:")


def fit_markdown(md: str, root: str | Path | None = None, width: int = UI_LINE_WIDTH) -> str:
    """Markdown whose every line fits ``width``, rendered the same way (see ``ui_metadata``)."""
    lines = _relative_to_root(md, root).split("\n")
    out: list[str] = []
    i, fenced = 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if (not fenced and line.lstrip().startswith("|") and i + 1 < len(lines)
                and _SEPARATOR.match(lines[i + 1])):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.extend(_fit_table(lines[i:j], width))
            i = j
            continue
        if fenced or len(line) <= width or _IMAGE.match(line):
            out.append(line)  # a code block keeps its lines; an image is drawn, not printed
        else:
            marker = _LIST_ITEM.match(line)
            indent = " " * len(marker.group(1)) if marker else re.match(r"\s*", line).group(0)
            out.extend(textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                                     break_on_hyphens=False))
        i += 1
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip() for c in _PIPE.split(line)]


def _fit_table(block: list[str], width: int) -> list[str]:
    """A pipe table that fits, else narrower tables (each repeating the first column), else a list."""
    if max(map(len, block)) <= width:
        return block
    header, align, rows = _cells(block[0]), _cells(block[1]), [_cells(r) for r in block[2:]]
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        return _table_as_list(header, rows, width)  # an unescaped pipe in a cell: no grid to split
    widths = [max(3, len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]

    def line_width(cols: list[int]) -> int:
        return sum(widths[k] for k in cols) + 3 * len(cols) + 1

    groups: list[list[int]] = []
    for k in range(1, len(header)):
        if groups and line_width(groups[-1] + [k]) <= width:
            groups[-1].append(k)
        elif line_width([0, k]) <= width:
            groups.append([0, k])
        else:
            return _table_as_list(header, rows, width)
    groups = groups or [[0]]
    if line_width(groups[0]) > width:
        return _table_as_list(header, rows, width)
    out: list[str] = []
    for n, cols in enumerate(groups):
        if n:
            out.append("")  # a blank line ends one table and starts the next
        shape = [(widths[k], _right_aligned(align[k])) for k in cols]
        out.append(_row([header[k] for k in cols], shape))
        out.append("| " + " | ".join(_rule(align[k], widths[k]) for k in cols) + " |")
        out.extend(_row([r[k] for k in cols], shape) for r in rows)
    return out


def _right_aligned(align: str) -> bool:
    return align.endswith(":") and not align.startswith(":")


def _row(cells: list[str], shape: list[tuple[int, bool]]) -> str:
    return "| " + " | ".join(c.rjust(w) if right else c.ljust(w) for c, (w, right) in zip(cells, shape)) + " |"


def _rule(align: str, w: int) -> str:
    left, right = align.startswith(":"), align.endswith(":")
    return (":" if left else "-") + "-" * (w - 2) + (":" if right else "-")


def _table_as_list(header: list[str], rows: list[list[str]], width: int) -> list[str]:
    """One list item per row: ``first cell: column value; column value ...`` (a key-value table:
    ``key: value``), wrapped."""
    out = []
    for r in rows:
        pairs = r[1] if len(header) == 2 else "; ".join(f"{h} {c}" for h, c in zip(header[1:], r[1:]))
        item = f"- **{r[0] if r else ''}**" + (f": {pairs}" if pairs else "")
        out.extend(textwrap.wrap(item, width, subsequent_indent="  ", break_long_words=False,
                                 break_on_hyphens=False))
    return out
