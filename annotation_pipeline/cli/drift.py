"""``annotation-pipeline drift --date DAY``: judge a day of production predictions.

The same computation as the ``drift_signals`` asset (drift.assess_day), for scripts and CI
that want the answer without Dagster: the day's logs under
``ROOT/monitoring/predictions/<DAY>/`` against each model version's reference predictions in
``ROOT/monitoring/reference/<model_version>.parquet``. Exit 0 with the verdict (drifted or
not: both are answers), 1 when the day has no prediction log at all; ``--fail-on-drift``
exits 3 on a drifted day, for a CI gate.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from annotation_pipeline.cli.common import CliError, add_root_option, emit, layout_for

DRIFTED_EXIT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drift", help="judge a day of production predictions against the model's reference",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", required=True, help="the day, YYYY-MM-DD")
    add_root_option(parser)
    parser.add_argument("--fail-on-drift", action="store_true", help=f"exit {DRIFTED_EXIT} when the day drifted")
    parser.set_defaults(func=run_drift)


def run_drift(args: argparse.Namespace) -> int:
    from annotation_pipeline.monitoring.drift import assess_day, campaign_id_for, summary

    try:
        day = date.fromisoformat(args.date).isoformat()
    except ValueError:
        raise CliError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    layout = layout_for(args)
    root = layout.root
    logs, assessment = assess_day(root, day)
    if logs.n_files == 0:
        raise CliError(f"no prediction log for {day}: {layout.predictions(day)}/ holds no .parquet or .csv file")
    facts = summary(assessment)
    result = {"date": day, "root": str(root), **facts,
              "predictions": {"received": logs.n_received, "accepted": logs.n_accepted,
                              "quarantined": len(logs.quarantine), "files": logs.n_files},
              "quarantine_reasons": logs.quarantine["reason"].value_counts().to_dict(),
              "campaign": campaign_id_for(day) if assessment.drifted else None,
              "signal_rows": assessment.signals.astype(object).where(assessment.signals.notna(), None)
              .to_dict("records")}
    emit(result, args.json, _render)
    return DRIFTED_EXIT if assessment.drifted and args.fail_on_drift else 0


def _render(r: dict[str, Any]) -> str:
    p = r["predictions"]
    lines = [f"production drift on {r['date']}: {'DRIFTED' if r['drifted'] else 'stable'}",
             f"  predictions  received {p['received']}  accepted {p['accepted']}  quarantined {p['quarantined']} "
             f"({p['files']} file(s))"]
    for s in r["signal_rows"]:
        p_value = f", p={s['p_value']:.2g}" if s["p_value"] is not None else ""
        lines.append(f"  {s['model_version']:<24} {s['metric']:<14} {s['value']:.4f} (threshold {s['threshold']}{p_value})"
                     f"{'  DRIFT' if s['drifted'] else ''}")
    for model, labels in r["drifted_labels"].items():
        if labels:
            lines.append(f"  {model}: share grew for {', '.join(labels)}")
    lines += [f"  not judged   {note}" for note in r["notes"]]
    if r["campaign"]:
        lines.append(f"  campaign     {r['campaign']} (started by drift_campaign_sensor; budget in its run config)")
    return "\n".join(lines)
