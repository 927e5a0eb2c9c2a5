"""``annotation-pipeline drift --date DAY``: judge a day of production predictions."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from annotation_pipeline.cli.common import CliError, add_root_option, emit, layout_for, parse_day

DRIFTED_EXIT = 3

HELP = f"""\
Judge a day of production predictions against the model's reference predictions,
with the same computation as the drift_signals asset, for scripts and CI.

Reads the day's logs under ROOT/monitoring/predictions/DAY/ (.parquet or .csv)
and each model version's validation-set predictions under
ROOT/monitoring/reference/MODEL_VERSION.parquet. Signals: population stability
index of the predicted-label shares, and a Kolmogorov-Smirnov test of the
confidences.

Exit 0 with the verdict (drifted or not: both are answers), 1 when the day has
no prediction log; with --fail-on-drift, {DRIFTED_EXIT} on a drifted day (a CI gate).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift", help="judge a day of production predictions against the model's reference",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, help="the day, YYYY-MM-DD")
    add_root_option(parser)
    parser.add_argument("--fail-on-drift", action="store_true", help=f"exit {DRIFTED_EXIT} when the day drifted")
    parser.set_defaults(func=run_drift)


def run_drift(args: argparse.Namespace) -> int:
    from annotation_pipeline.monitoring.drift import assess_day, campaign_id_for, summary

    day = parse_day(args.date)
    layout = layout_for(args)
    root = layout.root
    logs, assessment = assess_day(root, day)
    if logs.n_files == 0:
        raise CliError(f"no prediction log for {day}: {layout.predictions(day)}/ holds no .parquet or .csv file")
    if logs.n_accepted == 0 and len(logs.quarantine):  # nothing to judge: say what is wrong with each file
        first = logs.quarantine.drop_duplicates(["source_file", "reason"])
        raise CliError(*(f"{layout.root / q.source_file}: {q.reason}: {q.detail}" for q in first.itertuples()))
    facts = summary(assessment)
    result = {"date": day, "root": str(root), **facts,
              "predictions": {"received": logs.n_received, "accepted": logs.n_accepted,
                              "quarantined": len(logs.quarantine), "files": logs.n_files},
              "quarantine_reasons": logs.quarantine["reason"].value_counts().to_dict(),
              "campaign": campaign_id_for(day) if assessment.drifted else None,
              "signal_rows": assessment.signals.to_dict("records")}
    emit(result, args.json, _render)
    return DRIFTED_EXIT if assessment.drifted and args.fail_on_drift else 0


def _render(r: dict[str, Any]) -> str:
    p = r["predictions"]
    lines = [f"production drift on {r['date']}: {'DRIFTED' if r['drifted'] else 'stable'}",
             f"  predictions  received {p['received']}  accepted {p['accepted']}  quarantined {p['quarantined']} "
             f"({p['files']} file(s))"]
    for s in r["signal_rows"]:
        p_value = f", p={s['p_value']:.2g}" if pd.notna(s["p_value"]) else ""
        lines.append(f"  {s['model_version']:<24} {s['metric']:<14} {s['value']:.4f} (threshold {s['threshold']}{p_value})"
                     f"{'  DRIFT' if s['drifted'] else ''}")
    for model, labels in r["drifted_labels"].items():
        if labels:
            lines.append(f"  {model}: share grew for {', '.join(labels)}")
    lines += [f"  not judged   {note}" for note in r["notes"]]
    if r["campaign"]:
        lines.append(f"  campaign     {r['campaign']} (started by drift_campaign_sensor; budget in its run config)")
    return "\n".join(lines)
