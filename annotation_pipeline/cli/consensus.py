"""``consensus``, ``agreement`` and ``merge-boxes`` commands (contract in DESIGN.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_pipeline.cli.common import CliError, emit
from annotation_pipeline.consensus.encoding import ANSWER_COLUMNS, METHODS

# The aggregators (scipy), agreement and box merging are imported by the command that uses them:
# `merge-boxes` would otherwise spend a large part of its whole process importing scipy.

_METHOD_ALIASES = {m: m for m in METHODS}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("consensus", help="one label per item from several annotators")
    p.add_argument("--input", required=True, type=Path, help="ANSWERS.csv: item_id,annotator_id,label")
    p.add_argument("--output", required=True, type=Path, help="LABELS.csv: item_id,label,confidence")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="auto (default: committee of Dawid-Skene shrinkage levels), mv = majority vote, "
                        "wmv = gold-weighted vote, ds = Dawid-Skene, ocds = one-coin Dawid-Skene, "
                        "bds = Dawid-Skene with hierarchical priors")
    p.add_argument("--gold", type=Path, default=None, help="GOLD.csv: item_id,label")
    p.set_defaults(func=run_consensus_command)

    p = subparsers.add_parser("agreement", help="inter-annotator agreement of ANSWERS.csv")
    p.add_argument("--input", required=True, type=Path, help="ANSWERS.csv: item_id,annotator_id,label")
    p.set_defaults(func=run_agreement_command)

    p = subparsers.add_parser("merge-boxes", help="merge annotators' boxes by IoU")
    p.add_argument("--input", required=True, type=Path,
                   help="BOXES.csv: item_id,annotator_id,label,x_min,y_min,x_max,y_max")
    p.add_argument("--output", required=True, type=Path,
                   help="MERGED.csv: item_id,label,x_min,y_min,x_max,y_max,confidence,n_annotators")
    p.add_argument("--iou", type=float, default=0.5, help="IoU threshold (default 0.5)")
    p.add_argument("--quorum", type=int, default=None,
                   help="annotators needed per object (default: majority of those who saw the item)")
    p.set_defaults(func=run_merge_boxes_command)


def read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a CSV as strings; CliError names the file and missing columns / empty cells."""
    if not path.exists():
        raise CliError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CliError(f"{path}: missing column(s) {', '.join(missing)}; "
                       f"expected {','.join(required)}")
    problems = []
    for column in required:
        empty = np.flatnonzero(frame[column].isna().to_numpy())
        if len(empty):
            # +2: header line and 1-based numbering, so the row matches an editor's line number
            problems.append(f"{path}: column {column} is empty on line(s) "
                            f"{', '.join(str(r + 2) for r in empty[:5])}"
                            f"{' ...' if len(empty) > 5 else ''}")
    if problems:
        raise CliError(*problems)
    return frame


def _numeric(frame: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    problems = []
    out = frame.copy()
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() | ~np.isfinite(values.to_numpy(float)))
        if len(bad):
            problems.append(f"{path}: column {column} is not a number on line {bad[0] + 2} "
                            f"({frame[column].iloc[bad[0]]!r})"
                            f"{f' and {len(bad) - 1} more line(s)' if len(bad) > 1 else ''}")
        out[column] = values
    if problems:
        raise CliError(*problems)
    return out


def run_consensus_command(args: argparse.Namespace) -> int:
    from annotation_pipeline.consensus.auto import aggregate_labels

    answers = read_csv(args.input, ANSWER_COLUMNS)
    gold = read_csv(args.gold, ("item_id", "label")) if args.gold else None
    result = aggregate_labels(answers[list(ANSWER_COLUMNS)], _METHOD_ALIASES[args.method], gold)
    result[["item_id", "label", "confidence"]].to_csv(args.output, index=False)
    summary = {"input": str(args.input), "output": str(args.output),
               "method": result.attrs["method"], "answers": int(len(answers)),
               "items": int(len(result)), "annotators": int(answers["annotator_id"].nunique()),
               "mean_confidence": float(result["confidence"].mean()) if len(result) else None}
    emit(summary, args.json, _render_consensus)
    return 0


def _render_consensus(r: dict[str, Any]) -> str:
    return (f"{r['items']} items labeled from {r['answers']} answers of {r['annotators']} "
            f"annotators with {r['method']} (mean confidence {r['mean_confidence'] or 0:.3f}) "
            f"-> {r['output']}")


def run_agreement_command(args: argparse.Namespace) -> int:
    from annotation_pipeline.consensus.agreement import batch_agreement, class_agreement

    answers = read_csv(args.input, ANSWER_COLUMNS)
    overall = batch_agreement(answers)
    per_class = class_agreement(answers)
    result = {"input": str(args.input), "answers": int(len(answers)),
              "items": int(answers["item_id"].nunique()),
              "annotators": int(answers["annotator_id"].nunique()),
              **{k: _finite(v) for k, v in overall.items()},
              "per_class": [{k: (_finite(v) if isinstance(v, float) else v)
                             for k, v in row.items()} for row in per_class.to_dict("records")]}
    emit(result, args.json, _render_agreement)
    return 0


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _render_agreement(r: dict[str, Any]) -> str:
    lines = [f"{r['answers']} answers, {r['items']} items, {r['annotators']} annotators",
             f"Cohen's kappa (mean pairwise)  {_fmt(r['cohen_kappa'])}",
             f"Fleiss' kappa                  {_fmt(r['fleiss_kappa'])}",
             f"Krippendorff's alpha (nominal) {_fmt(r['krippendorff_alpha'])}",
             "per class (one vs rest):   cohen   fleiss  alpha   answers"]
    for row in r["per_class"]:
        lines.append(f"  {row['label']:<22} {_fmt(row['cohen_kappa']):>7} "
                     f"{_fmt(row['fleiss_kappa']):>7} {_fmt(row['krippendorff_alpha']):>7} "
                     f"{row['n']:>8}")
    return "\n".join(lines)


def run_merge_boxes_command(args: argparse.Namespace) -> int:
    from annotation_pipeline.consensus.boxes import BOX_COLUMNS, COORDS, merge_boxes_by_iou

    if not 0.0 < args.iou <= 1.0:
        raise CliError(f"--iou must be in (0, 1], got {args.iou}")
    if args.quorum is not None and args.quorum < 1:
        raise CliError(f"--quorum must be at least 1, got {args.quorum}")
    boxes = _numeric(read_csv(args.input, BOX_COLUMNS), args.input, COORDS)
    inverted = np.flatnonzero(((boxes["x_max"] < boxes["x_min"])
                               | (boxes["y_max"] < boxes["y_min"])).to_numpy())
    if len(inverted):
        raise CliError(f"{args.input}: x_max < x_min or y_max < y_min on line(s) "
                       f"{', '.join(str(r + 2) for r in inverted[:5])}; expected "
                       "x_min,y_min,x_max,y_max with min <= max")
    result = merge_boxes_by_iou(boxes, iou_threshold=args.iou, quorum=args.quorum)
    merged = result.merged[["item_id", "label", *COORDS, "confidence", "n_annotators"]]
    merged.to_csv(args.output, index=False)
    summary = {"input": str(args.input), "output": str(args.output), **result.counts}
    emit(summary, args.json, _render_merge)
    return 0


def _render_merge(r: dict[str, Any]) -> str:
    return (f"{r['objects_received']} boxes -> {r['merged_objects']} merged objects "
            f"({r['objects_in_merged']} boxes), {r['clusters_below_quorum']} clusters below "
            f"quorum ({r['objects_below_quorum']} boxes) -> {r['output']}")
