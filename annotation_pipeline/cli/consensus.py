"""``consensus``, ``agreement`` and ``merge-boxes`` commands (contract in DESIGN.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from annotation_pipeline.cli.common import (
    CliError,
    check_output_file,
    emit,
    non_negative_float,
    numeric_columns,
    positive_int,
    read_csv,
    unit_interval_open_closed,
)
from annotation_pipeline.consensus.encoding import ANSWER_COLUMNS, METHODS

# The aggregators (scipy), agreement and box merging are imported by the command that uses them:
# `merge-boxes` would otherwise spend a large part of its whole process importing scipy.

CONSENSUS_HELP = """One label per item from several annotators' answers.

ANSWERS.csv has the columns item_id,annotator_id,label (one row per answer).
LABELS.csv gets item_id,label,confidence (one row per item).
Methods: mv = majority vote, wmv = vote weighted by each annotator's accuracy
on GOLD.csv (item_id,label), ds = Dawid-Skene. auto (default) fits the vote,
one-coin, GLAD, MACE and shrunk Dawid-Skene models, and (up to 10 classes) MACE and
Dawid-Skene with ambiguous items, on 2 of 3 answer folds; it keeps those that
predict the held-out answers clearly better than the vote and averages the best
with the ones held-out answers cannot tell from it (else the vote).
"""

AGREEMENT_HELP = """Inter-annotator agreement of ANSWERS.csv (item_id,annotator_id,label):
Cohen's kappa (mean over annotator pairs), Fleiss' kappa and Krippendorff's
alpha (nominal), overall and per class (one class against the rest).
"""

MERGE_HELP = """Merge several annotators' boxes of the same object into one, by IoU.

BOXES.csv: item_id,annotator_id,label,x_min,y_min,x_max,y_max (pixels).
MERGED.csv: item_id,label,x_min,y_min,x_max,y_max,confidence,n_annotators.
Boxes of one label overlapping at IoU >= --iou form an object; it is kept when
at least --quorum annotators drew it (default: a majority of those who saw the item).
Small boxes are matched allowing for the annotators' corner noise (--pointing-noise,
pixels; default: measured on the boxes themselves, 0 = plain IoU); the noise used is
printed and written to the JSON summary.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("consensus", help="one label per item from several annotators",
                              description=CONSENSUS_HELP, formatter_class=raw)
    p.add_argument("--input", required=True, type=Path, help="ANSWERS.csv: item_id,annotator_id,label")
    p.add_argument("--output", required=True, type=Path, help="LABELS.csv: item_id,label,confidence")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="auto (default: the crowd model held-out answers support), mv = majority vote, "
                        "wmv = gold-weighted vote, ds = Dawid-Skene, ocds = one-coin Dawid-Skene, "
                        "bds = Dawid-Skene with hierarchical priors")
    p.add_argument("--gold", type=Path, default=None, help="GOLD.csv: item_id,label")
    p.set_defaults(func=run_consensus_command)

    p = subparsers.add_parser("agreement", help="inter-annotator agreement of ANSWERS.csv",
                              description=AGREEMENT_HELP, formatter_class=raw)
    p.add_argument("--input", required=True, type=Path, help="ANSWERS.csv: item_id,annotator_id,label")
    p.set_defaults(func=run_agreement_command)

    p = subparsers.add_parser("merge-boxes", help="merge annotators' boxes by IoU",
                              description=MERGE_HELP, formatter_class=raw)
    p.add_argument("--input", required=True, type=Path,
                   help="BOXES.csv: item_id,annotator_id,label,x_min,y_min,x_max,y_max")
    p.add_argument("--output", required=True, type=Path,
                   help="MERGED.csv: item_id,label,x_min,y_min,x_max,y_max,confidence,n_annotators")
    p.add_argument("--iou", type=unit_interval_open_closed, default=0.5, help="IoU threshold in (0, 1] (default 0.5)")
    p.add_argument("--quorum", type=positive_int, default=None,
                   help="annotators needed per object, at least 1 (default: majority of those who saw the item)")
    p.add_argument("--pointing-noise", type=non_negative_float, default=None, metavar="PX",
                   help="sd of annotators' corner noise in pixels, allowed for when matching small "
                        "boxes (default: measured on the boxes; 0 = plain IoU)")
    p.set_defaults(func=run_merge_boxes_command)


def run_consensus_command(args: argparse.Namespace) -> int:
    from annotation_pipeline.consensus.auto import aggregate_labels
    from annotation_pipeline.consensus.encoding import AnswersError

    check_output_file(args.output)
    answers = read_csv(args.input, ANSWER_COLUMNS, what="answer")
    gold = read_csv(args.gold, ("item_id", "label"), what="gold label") if args.gold else None
    try:
        result = aggregate_labels(answers[list(ANSWER_COLUMNS)], args.method, gold)
    except AnswersError as exc:
        raise CliError(f"{args.input}: {exc}") from None
    result[["item_id", "label", "confidence"]].to_csv(args.output, index=False)
    summary = {"input": str(args.input), "output": str(args.output),
               "method": result.attrs["method"],
               "models_used": list(getattr(result.attrs["model"], "members_", [])) or None,
               "model_weights": _weights(result.attrs["model"]),
               "answers": int(len(answers)),
               "items": int(len(result)), "annotators": int(answers["annotator_id"].nunique()),
               "mean_confidence": float(result["confidence"].mean()) if len(result) else None}
    emit(summary, args.json, _render_consensus)
    return 0


def _weights(model) -> dict[str, float] | None:
    """auto's stack: each member's share of the posterior (None for the single-model methods)."""
    weights = getattr(model, "weights_", None)
    return None if weights is None else {name: round(float(w), 4) for name, w in weights.items()}


def _render_consensus(r: dict[str, Any]) -> str:
    return (f"{r['items']} items labeled from {r['answers']} answers of {r['annotators']} "
            f"annotators with {r['method']}"
            + (" (" + " + ".join(f"{name} {weight:.2f}" for name, weight in r["model_weights"].items())
               + ")" if r.get("model_weights") else "")
            + f" (mean confidence {r['mean_confidence'] or 0:.3f}) "
            f"-> {r['output']}")


def run_agreement_command(args: argparse.Namespace) -> int:
    from annotation_pipeline.consensus.agreement import batch_agreement, class_agreement

    answers = read_csv(args.input, ANSWER_COLUMNS, what="answer")
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
    from annotation_pipeline.consensus.box_reliability import merge_boxes_reliability_weighted
    from annotation_pipeline.consensus.boxes import BOX_COLUMNS, COORDS, GeometryError

    check_output_file(args.output)
    boxes = numeric_columns(read_csv(args.input, BOX_COLUMNS, what="box"), args.input, COORDS)
    inverted = np.flatnonzero(((boxes["x_max"] < boxes["x_min"])
                               | (boxes["y_max"] < boxes["y_min"])).to_numpy())
    if len(inverted):
        raise CliError(*(f"{args.input}: line {r + 2}: x_max < x_min or y_max < y_min; expected "
                         "x_min,y_min,x_max,y_max with min <= max" for r in inverted))
    try:
        result, _ = merge_boxes_reliability_weighted(boxes, iou_threshold=args.iou, quorum=args.quorum,
                                                     pointing_noise=args.pointing_noise)
    except GeometryError as exc:
        raise CliError(f"{args.input}: {exc}") from None
    merged = result.merged[["item_id", "label", *COORDS, "confidence", "n_annotators"]]
    merged.to_csv(args.output, index=False)
    summary = {"input": str(args.input), "output": str(args.output), **result.counts,
               "pointing_noise": float(result.pointing_noise),
               "pointing_noise_source": "measured" if args.pointing_noise is None else "given"}
    emit(summary, args.json, _render_merge)
    return 0


def _render_merge(r: dict[str, Any]) -> str:
    return (f"{r['objects_received']} boxes -> {r['merged_objects']} merged objects "
            f"({r['objects_in_merged']} boxes), {r['clusters_below_quorum']} clusters below "
            f"quorum ({r['objects_below_quorum']} boxes); corner noise allowed for "
            f"{r['pointing_noise']:.2f} px ({r['pointing_noise_source']}) -> {r['output']}")
