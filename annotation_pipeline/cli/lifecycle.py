"""``demo``, ``releases`` and ``trace``: the lifecycle from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from annotation_pipeline.cli.common import (
    CliError,
    add_root_option,
    emit,
    non_negative_int,
    parse_day,
    positive_int,
    settings_for,
)
from annotation_pipeline.contracts import CONSENSUS_LABELS, PROVENANCE, require_columns
from annotation_pipeline.layout import INSTANCE_YAML, DataLayout
from annotation_pipeline.settings import DAGSTER_HOME_ENV, SECRET_ENV, load_settings, set_for_this_process

# Sample data only: a publicly known key is fine for fake personal data, never for real data.
DEMO_SECRET = "demo-only-key-for-generated-sample-data-0123456789"


DEMO_HELP = """\
Run the whole lifecycle on generated sample data, through Dagster on the local
profile: ingestion, anonymization, pre-labels, vendor handoff to a simulated
workforce, QA, consensus, review by a simulated reviewer, release and drift.
Prints the counts of each stage and the release. A rerun on the same root
changes nothing.

The Dagster instance is $DAGSTER_HOME when set, else ROOT/dagster_home.
"""

RELEASES_HELP = """\
List the dataset releases under the data root: version, date, labels, items,
content fingerprint and parent release.
"""

TRACE_HELP = """\
Trace an item's released labels back to the vendor answers behind them, the
vendor files they came from (with sha256), the raw file it was ingested from
and the redactions applied, and the review decisions on it (who, when, what,
why); check that the release's files are intact.

With --list instead of an item id: the item ids there are to trace, with the
releases holding each and its labels (every release, or only --release's).
Released labels have no id of their own: an item id names them.
"""


def register(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    demo = sub.add_parser("demo", help="run the whole lifecycle on generated sample data through Dagster",
                          description=DEMO_HELP, formatter_class=raw)
    add_root_option(demo)
    demo.add_argument("--images", type=positive_int, default=40, help="synthetic images to generate (default 40)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="sample-data seed, 0 or more (default 0)")
    demo.add_argument("--date", default=None, help="partition date YYYY-MM-DD (default: yesterday, UTC)")
    demo.set_defaults(func=run_demo)

    releases = sub.add_parser("releases", help="list dataset releases", description=RELEASES_HELP,
                              formatter_class=raw)
    add_root_option(releases)
    releases.set_defaults(func=list_releases)

    trace = sub.add_parser("trace", help="trace an item's released labels back to vendor answers and the raw file",
                           description=TRACE_HELP, formatter_class=raw)
    trace.add_argument("item_id", nargs="?", default=None, help="the item to trace (see --list)")
    add_root_option(trace)
    trace.add_argument("--release", default=None,
                       help="release version (default: the latest; with --list: every release)")
    trace.add_argument("--list", action="store_true", dest="list_items",
                       help="list the item ids there are to trace, with their releases and labels")
    # misuse (an item id and --list, or neither) is argparse's exit 2, said by this parser
    trace.set_defaults(func=trace_item, misuse=trace.error)


def _partition_date(value: str | None) -> str:
    if value is None:
        return (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
    parsed = date.fromisoformat(parse_day(value))
    if parsed < date(2026, 1, 1):
        raise CliError(f"--date {value}: partitions start on 2026-01-01")
    today = datetime.now(timezone.utc).date()
    if parsed >= today:  # a daily partition exists once its day has ended (UTC)
        raise CliError(f"--date {value}: the day has not ended yet (UTC); the latest partition is "
                       f"{(today - timedelta(days=1)).isoformat()}")
    return parsed.isoformat()


def _check_dagster_home(root: Path) -> None:
    """Before any work: Dagster's own error for a missing $DAGSTER_HOME is a traceback."""
    home = load_settings().dagster_home
    if home is not None and not home.is_dir():
        raise CliError(f"DAGSTER_HOME={home} is not a folder; create it, or unset DAGSTER_HOME to use "
                       f"{DataLayout(root).dagster_home}")


def _instance(root: Path):
    """The Dagster instance: $DAGSTER_HOME when set, else SQLite under the data root."""
    from dagster import DagsterInstance

    if load_settings().dagster_home is None:
        home = DataLayout(root).dagster_home
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_bytes(INSTANCE_YAML.read_bytes())  # the repository's settings, as they are
        set_for_this_process(DAGSTER_HOME_ENV, str(home))
    return DagsterInstance.get()


# The summary is the demo's output; Dagster's step log (tracebacks of failed steps included)
# stays in the instance, for the UI. A stopped batch is explained by the summary instead.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_demo(args: argparse.Namespace) -> int:
    root = settings_for(args).data_root
    partition = _partition_date(args.date)
    _check_dagster_home(root)
    if not settings_for(args).has_pseudonym_secret:
        set_for_this_process(SECRET_ENV, DEMO_SECRET)
        print(f"note: {SECRET_ENV} is not set; using the public demo key (fine for generated sample data only)",
              file=sys.stderr)
    from annotation_pipeline.sample_world.sample_data import generate_gold_set, generate_partition

    generated = generate_partition(root, partition, args.images, seed=args.seed)
    generate_gold_set(root)

    from annotation_pipeline.definitions import build_definitions

    instance = _instance(root)
    defs = build_definitions("local", root)
    if not DataLayout(root).prelabel_model.exists():  # trained once; reruns reuse it
        trained = defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance, raise_on_error=False, run_config=_QUIET)
        if not trained.success:
            raise CliError("training the pre-label model failed; see the run in the Dagster UI")
    _log_production_predictions(root, partition)
    result = defs.resolve_job_def("annotation_lifecycle").execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=False, run_config=_QUIET)
    summary = _summarize(result, root, partition, generated.n_files)
    if result.success:
        summary["pilot"] = _pilot(root, partition)
    emit(summary, args.json, _render_demo)
    if not result.success:
        for problem in summary["problems"]:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def _log_production_predictions(root: Path, partition: str) -> None:
    """Play the serving team: the pre-label model stands in for the production model, logging
    its reference predictions once and the day's predictions on foggier frames (they drift)."""
    from annotation_pipeline.prelabel.model import ModelIntegrityError, load_model
    from annotation_pipeline.sample_world.sample_data import load_sample_settings
    from annotation_pipeline.sample_world.serving_team import generate_prediction_logs

    production = load_sample_settings()["production"]
    layout = DataLayout(root)
    try:
        model = load_model(root)
    except ModelIntegrityError as exc:  # a replaced model file: say so, never load it
        raise CliError(str(exc)) from None
    size, n = tuple(production["frame_size"]), production["predictions_per_day"]
    if not layout.reference_log(model.version).exists():
        generate_prediction_logs(root, model, "reference", n, production["reference_scene_shares"], size=size)
    if not layout.prediction_log(partition, "serving").exists():  # reruns reuse it
        generate_prediction_logs(root, model, partition, n, production["scene_shares"], size=size)


_GATE_EVIDENCE = ("message", "what_to_do", "estimate", "interval", "threshold", "decision")


def _blocked_gate(name: str, check: dict) -> str:
    """One line: which gate stopped the batch, on what numbers, and what to do."""
    numbers = ", ".join(f"{k} {check[k]}" for k in ("estimate", "interval", "threshold") if check.get(k) is not None)
    return (f"blocking check {name} stopped the batch" + (f": {check['message']}" if check.get("message") else "")
            + (f" ({numbers})" if numbers else "")
            + f"; what to do: {check.get('what_to_do') or 'see the check in the Dagster UI'}")


def _one_line(entry):
    """A metadata entry's value as data: a text the UI shows wrapped (``defs.common.fit_text`` breaks
    lines at single spaces) joined back into the one line it was."""
    value = getattr(entry, "value", entry)
    return value.replace("\n", " ") if type(entry).__name__ == "TextMetadataValue" else value


def _summarize(result, root: Path, partition: str, landed: int) -> dict:
    meta = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        meta[mat.asset_key.to_user_string()] = {k: _one_line(v) for k, v in mat.metadata.items()}
    checks = {}
    for event in result.get_asset_check_evaluations():
        evidence = {k: _one_line(v) for k, v in event.metadata.items() if k in _GATE_EVIDENCE}
        checks[event.check_name] = {"passed": event.passed, "severity": str(event.severity.value), **evidence}
    blocked = {name: c for name, c in checks.items() if not c["passed"] and c["severity"] == "ERROR"}
    problems = [_blocked_gate(name, c) for name, c in blocked.items()]
    # a stopped batch fails its step too; that failure is the gate's, already explained above
    problems += [f"{e.step_key}: {e.event_specific_data.error.message.strip().splitlines()[0]}"
                 for e in result.all_events if e.is_step_failure and not blocked]

    def pick(asset: str, *keys: str) -> dict:
        return {k: meta.get(asset, {}).get(k) for k in keys}

    return {
        "root": str(root), "partition": partition, "success": result.success, "run_id": result.run_id,
        "landed_files": landed,
        "items": pick("raw_items", "received", "accepted", "quarantined", "duplicates"),
        "anonymized": pick("anonymized_items", "received", "accepted", "quarantined", "redactions"),
        "auto_accept": pick("auto_accepted_labels", "auto_accept", "reason", "items_auto_accepted",
                            "labels_auto_accepted", "items_sent_as_check", "min_measured_precision",
                            "gold_labels_behind", "target_precision"),
        "handoff": pick("vendor_batches", "batch_id", "tasks", "gold_tasks", "overlap", "exchange"),
        "annotations": pick("returned_annotations", "received", "accepted", "quarantined", "files_received"),
        "consensus": {**pick("consensus_labels", "method", "dagster/row_count", "mean_confidence"),
                      **pick("review_queue", "queued", "deferred", "dismissed")},
        "review": {**pick("review_tasks", "tasks", "gold_tasks"),
                   **pick("review_decisions", "received", "accepted", "quarantined", "by_decision"),
                   "reviewer_accuracy": {k.removeprefix("accuracy_"): v for k, v in meta.get("reviewer_accuracy", {}).items()
                                         if k.startswith("accuracy_")},
                   "reviewed_labels": meta.get("dataset_release", {}).get("reviewed_labels_of_the_day")},
        "release": pick("dataset_release", "version", "new_release", "labels", "items", "dvc_md5", "path"),
        "drift": pick("drift_signals", "drifted", "signals", "drifted_labels"),
        "vendors": meta.get("vendor_scorecards", {}).get("vendor_figures") or [],
        "checks": checks, "problems": problems,
    }


def _render_demo(s: dict) -> str:
    i, a, c, r = s["items"], s["annotations"], s["consensus"], s["release"]
    lines = [
        f"annotation lifecycle for {s['partition']} under {s['root']}: {'succeeded' if s['success'] else 'FAILED'}",
        f"  items        received {i['received']}  accepted {i['accepted']}  duplicates {i['duplicates']}  "
        f"quarantined {i['quarantined']}",
        f"  anonymized   {s['anonymized']['accepted']} items, {s['anonymized']['redactions']} redactions",
        _render_auto_accept(s["auto_accept"]),
        f"  handoff      batch {s['handoff']['batch_id']}: {s['handoff']['tasks']} tasks "
        f"({s['handoff']['gold_tasks']} hidden gold), overlap {s['handoff']['overlap']}",
        f"  exchange     {s['handoff'].get('exchange')}",
        f"  annotations  received {a['received']}  accepted {a['accepted']}  quarantined {a['quarantined']}",
        (f"  consensus    {c['dagster/row_count']} labels ({c['method']}), {c['queued']} queued for review "
         f"({c['deferred']} deferred over budget, {c['dismissed']} dismissed with a reason)"
         if c["dagster/row_count"] is not None else "  consensus    not run: the batch was stopped (see problem)"),
        f"  checks       {sum(v['passed'] for v in s['checks'].values())}/{len(s['checks'])} passed"
        + _failed_checks(s["checks"]),
    ]
    if s["review"].get("tasks") is not None:
        v = s["review"]
        decided = ", ".join(f"{k} {n}" for k, n in sorted((v["by_decision"] or {}).items())) or "none"
        accuracy = ", ".join(f"{k} {a:.2f}" for k, a in v["reviewer_accuracy"].items()) or "not measured"
        lines.insert(-1, f"  review       {v['tasks']} tasks ({v['gold_tasks']} hidden gold): decisions received "
                         f"{v['received']}  accepted {v['accepted']}  quarantined {v['quarantined']} ({decided}); "
                         f"reviewer accuracy on gold {accuracy}"
                         + (f"; {v['reviewed_labels']} labels released by review" if v["reviewed_labels"] is not None
                            else ""))
    if r.get("version"):
        # not "new" vs "reused": the printout of a rerun is byte-identical (--json has new_release)
        lines.append(f"  release      {r['version']}: {r['labels']} labels on {r['items']} items, "
                     f"dvc md5 {r['dvc_md5']}")
        lines.append(f"               {r['path']}")
    d = s["drift"]
    if d.get("drifted") is not None:
        grown = ", ".join(f"{label} ({model})" for model, labels in (d["drifted_labels"] or {}).items() for label in labels)
        lines.append(f"  drift        {'DRIFTED' if d['drifted'] else 'stable'}: "
                     + "  ".join(f"{k} {v}" for k, v in (d["signals"] or {}).items())
                     + (f"; grew: {grown} -> the drift sensor starts campaign drift-{s['partition']}" if d["drifted"] else ""))
    lines += _vendor_lines(s.get("vendors") or [], s.get("pilot") or [])
    lines += [f"  problem      {p}" for p in s["problems"]]
    return "\n".join(lines)


def _failed_checks(checks: dict) -> str:
    """The checks that did not pass, by severity: '; not passed: warn a, b; blocking c'."""
    failed = {"warn": [], "blocking": []}
    for name, c in sorted(checks.items()):
        if not c["passed"]:
            failed["blocking" if c["severity"] == "ERROR" else "warn"].append(name)
    shown = "; ".join(f"{k} {', '.join(v)}" for k, v in failed.items() if v)
    return f"; not passed: {shown}" if shown else ""


def _pilot(root: Path, partition: str) -> list[dict]:
    """The sample world's pilot on the day's batch: two vendors, the same tasks (sample_world.pilot)."""
    import pandas as pd

    from annotation_pipeline.sample_world.pilot import simulate_pilot

    path = DataLayout(root).table(["vendor_batches"], partition)
    if not path.is_file():
        return []
    pilot = simulate_pilot(root, pd.read_parquet(path), partition_date=partition).round(4)
    return pilot.astype(object).where(pilot.notna(), None).to_dict("records")


def _vendor_lines(vendors: list[dict], pilot: list[dict]) -> list[str]:
    """The program manager's figures as a short table: the day's vendors, then the pilot's."""
    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}%"

    def num(v, digits=3):
        return "–" if v is None else f"{v:.{digits}f}"

    def hours(v):
        return "–" if v is None else f"{v:.2f} h"

    def row(r: dict) -> str:
        return (f"{str(r['vendor'])[:14]:<14} {r['n_accepted']:>6} {num(r['cost_per_accepted_label'], 4):>10} "
                f"{hours(r.get('turnaround_hours')):>10} {num(r['tasks_per_hour'], 1):>8} {pct(r['rework_rate']):>7} "
                f"{pct(r['gold_accuracy']):>6} {pct(r['agreement_with_consensus']):>6}")

    if not vendors and not pilot:
        return []
    head = f"{'vendor':<14} {'labels':>6} {'cost/label':>10} {'turnaround':>10} {'tasks/h':>8} {'rework':>7} {'gold':>6} {'agree':>6}"
    lines = [f"  vendors      {head}"] + [f"               {row(r)}" for r in vendors]
    if pilot:
        lines.append(f"  pilot        the same {pilot[0].get('items')} items to each vendor (hidden gold among them):")
        lines += [f"               {row({**r, 'turnaround_hours': None})}" for r in pilot]
    return lines
def _render_auto_accept(a: dict) -> str:
    if a.get("auto_accept") is None:
        return "  auto-accept  not run"
    if a["auto_accept"] != "on":
        return f"  auto-accept  {a['reason']}"
    return (f"  auto-accept  {a['labels_auto_accepted']} labels on {a['items_auto_accepted']} items released as "
            f"machine labels, each in a class/band with held-out gold precision >= {a['target_precision']} "
            f"(lowest {a['min_measured_precision']:.3f}, {a['gold_labels_behind']} gold labels behind); "
            f"{a['items_sent_as_check']} more items sent to the vendor as a check")


def list_releases(args: argparse.Namespace) -> int:
    from annotation_pipeline.release.store import DvcReleaseStore

    settings = settings_for(args)
    root, store = settings.data_root, DvcReleaseStore.from_settings(settings)
    releases = [r.__dict__ for r in store.list_releases()]
    for r in releases:
        r.pop("created", None)
    emit({"root": str(root), "releases": releases}, args.json, lambda s: "\n".join(
        [f"{r['version']}  {r['created_at'][:19]}  {r['n_labels']:>6} labels  {r['n_items']:>5} items  "
         f"fingerprint {r['fingerprint']}  parent {r['parent'] or '-'}" for r in s["releases"]]
        or [f"no releases under {s['root']}"]))
    problems = store.check(with_dvc=False).problems  # a tampered history must not list as if intact
    if problems:
        raise CliError(*problems, "the release history was tampered with: `annotation-pipeline verify` for details")
    return 0


def trace_item(args: argparse.Namespace) -> int:
    from annotation_pipeline.release.store import DvcReleaseStore
    from annotation_pipeline.release.trace import trace_item as trace

    if args.list_items:
        if args.item_id is not None:
            args.misuse(f"--list lists the items to trace; it takes no item_id (got {args.item_id!r})")
        return list_traceable(args)
    if args.item_id is None:
        args.misuse("the following arguments are required: item_id (or --list to see the item ids)")
    settings = settings_for(args)
    root, store = settings.data_root, DvcReleaseStore.from_settings(settings)
    releases = [r.version for r in store.list_releases()]
    if not releases:
        raise CliError(f"no releases under {root}")
    version = args.release or releases[-1]
    if version not in releases:
        raise CliError(f"release {version!r} not found; known: {', '.join(releases)}")
    labels = store.read_table(version, "labels")
    provenance = store.read_table(version, "provenance")
    # a release written by an older version, or edited by hand, is named, not a KeyError
    require_columns(labels, [*CONSENSUS_LABELS.column_names, "partition_date"], f"release {version} labels")
    require_columns(provenance, PROVENANCE.column_names, f"release {version} provenance")
    if not (labels["item_id"] == args.item_id).any():
        raise CliError(f"item {args.item_id} has no label in release {version}")
    out = trace(DataLayout(root), args.item_id, version, labels, provenance,
                lambda v: store.read_table(v, "labels", columns=["item_id"]), releases)
    out["problems_with_release_files"] = store.verify(version)
    emit(out, args.json, _render_trace)
    if out["problems_with_release_files"]:  # the trace of a tampered release is not evidence
        raise CliError(*out["problems_with_release_files"])
    return 0


def list_traceable(args: argparse.Namespace) -> int:
    from annotation_pipeline.release.store import DvcReleaseStore
    from annotation_pipeline.release.trace import LIST_COLUMNS, traceable_items

    settings = settings_for(args)
    root, store = settings.data_root, DvcReleaseStore.from_settings(settings)
    releases = [r.version for r in store.list_releases()]
    if not releases:
        raise CliError(f"no releases under {root}: nothing to trace")
    if args.release is not None and args.release not in releases:
        raise CliError(f"release {args.release!r} not found; known: {', '.join(releases)}")
    versions = [args.release] if args.release else releases

    def labels_of(version: str):
        labels = store.read_table(version, "labels", columns=LIST_COLUMNS)
        require_columns(labels, LIST_COLUMNS, f"release {version} labels")
        return labels

    items = traceable_items(labels_of, versions)
    if not items:
        raise CliError(f"release{'s' if len(versions) > 1 else ''} {', '.join(versions)}: no labels, nothing to trace")
    out = {"root": str(root), "release": args.release, "releases": versions, "n_items": len(items),
           "n_labels": sum(i["n_labels"] for i in items), "items": items}
    emit(out, args.json, _render_traceable)
    problems = store.check(with_dvc=False).problems  # a tampered history must not list as if intact
    if problems:
        raise CliError(*problems, "the release history was tampered with: `annotation-pipeline verify` for details")
    return 0


def _render_traceable(s: dict) -> str:
    where = f"release {s['release']}" if s["release"] else f"releases {s['releases'][0]}..{s['releases'][-1]}" \
        if len(s["releases"]) > 1 else f"release {s['releases'][0]}"
    lines = [f"{s['n_items']} items to trace in {where} ({s['n_labels']} labels in the latest release of each); "
             f"`annotation-pipeline trace ITEM_ID [--release VERSION]`"]
    for item in s["items"]:
        labels = ", ".join(f"{c['kind']} {c['label']}" + (f" ×{c['count']}" if c["count"] > 1 else "")
                           for c in item["labels"])
        lines.append(f"  {item['item_id']}  {item['partition_date']}  {','.join(item['releases'])}  "
                     f"{item['n_labels']} labels: {labels}")
    return "\n".join(lines)


def _render_redactions(r: dict) -> str:
    """'21 redactions (values, ... regions; 15 log entries): address 1, ..., phone 3': the kinds add up."""
    line = (f"  redactions   {r['total']} ({r['unit']}; {r['log_entries']} log entries): "
            + ", ".join(f"{kind} {n}" for kind, n in r["by_kind"].items())) if r["total"] else "  redactions   none"
    if r["recorded_total"] is not None and r["recorded_total"] != r["total"]:
        line += f"; but anonymized_items records {r['recorded_total']}: the two disagree"
    return line


def _render_trace(t: dict) -> str:
    lines = [f"item {t['item_id']} in release {t['release']} (partition {t['partition']})"]
    for raw in t["raw_item"]:
        check = {True: "content hash verified", False: "CONTENT HASH DIFFERS", None: "raw store not here"}
        lines.append(f"  raw file     {raw['raw_path']} (landed {raw['raw_partition_date']}; "
                     f"{check[raw['content_hash_matches']]})")
    lines.append(_render_redactions(t["redaction_summary"]))
    lines.append(f"  pre-labels   {len(t['prelabels'])} shown, model {', '.join(t['model_versions']) or '-'}")
    for task in t["batches"]:
        lines.append(f"  task         {task['vendor']} batch {task['batch_id']} task {task['task_id']}"
                     + (" (hidden gold)" if task.get("is_gold") else ""))
    for a in t["answers"]:
        lines.append(f"    answer     {a.get('annotation_id') or a.get('record_ref')} "
                     f"{a.get('annotator_id') or '?'} {a.get('kind') or ''} {a.get('label') or ''}: {a['qa_outcome']}")
    for a in t["answers_not_used"]:
        lines.append(f"    not used   {a['annotation_id']} {a['annotator_id']} {a['label']}: {a['why']}")
    for d in t["review_decisions"]:
        what = {"confirm": f"confirm {d.get('candidate_label')}",
                "override": f"override {d.get('candidate_label')} -> {d.get('new_label')}",
                "reject": f"reject {d.get('candidate_label')}"}.get(d.get("decision"), str(d.get("decision")))
        lines.append(f"  reviewed     {d.get('reviewer_id')} at {d.get('decided_at')}: {d.get('kind')} {what}"
                     + (f" ({d['reason']!r})" if d.get("reason") else "")
                     + f" [decision {d.get('decision_id')}" + (", superseded]" if d.get("superseded") else "]"))
    for d in t.get("review_decisions_quarantined", []):
        lines.append(f"  reviewed     {d.get('annotator_id') or '?'}: decision quarantined ({d.get('reason')}): "
                     f"{d.get('detail')}")
    if t.get("auto_accepted"):
        checked = any(a["sent_for_check"] for a in t["auto_accepted"])
        lines.append(f"  auto-accept  {len(t['auto_accepted'])} pre-labels earned it"
                     + (" (item drawn for the vendor check)" if checked else ""))
    for label in t["labels"]:
        if label.get("label_source") == "machine":
            lines.append(f"  label        {label['kind']} {label['label']}: MACHINE label, auto-accepted "
                         f"({label['auto_accept_evidence']})")
            continue
        source = (f", by review decision {label['review_decision_id']}"
                  if label.get("label_source") == "review" else "")
        lines.append(f"  label        {label['kind']} {label['label']} confidence {label['confidence']:.3f} "
                     f"from {label['n_annotators']}/{label['n_assigned']} annotators ({label['method']}{source})")
    lines.append(f"  in releases  {', '.join(t['releases_containing_item'])}")
    lines.append("  release files intact" if not t["problems_with_release_files"]
                 else "  RELEASE FILES CHANGED: " + "; ".join(t["problems_with_release_files"]))
    return "\n".join(lines)
