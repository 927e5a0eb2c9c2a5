"""``annotation-pipeline intake FILE...``: judge vendor returns as the pipeline would, and report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd

from annotation_pipeline.cli.common import CliError, add_root_option, emit, input_file_problem, layout_for
from annotation_pipeline.contracts import GOLD_LABELS, VENDOR_TASKS
from annotation_pipeline.layout import DataLayout

HELP = """\
Runs the same function as the returned_annotations asset (vendor.returns.process_vendor_returns):
intake (Label Studio or COCO), the row-level Great Expectations suite and batch health. Files
must sit in ROOT/vendors/<vendor>/inbox/<batch_id>/; a batch folder (or the inbox) given as
FILE stands for every entry in it. The batch's handoff tasks are read from
ROOT/handoff/<batch_id>/tasks.parquet; when that file is missing the rows cannot be matched to
tasks and are reported as unknown_task (the report says which file was looked for).

What it leaves out, because it is the asset's state and this command changes nothing: it
does not record the files in the intake ledger, write the quarantine table or Data Docs, or
report to Dagster. It does read the ledger: a file already ingested by the pipeline on
another day than --date (any day, without --date) is reported as a duplicate file, as the
asset would. Exit 0 whenever a report was produced, also with quarantined rows; exit 1 when
none of the files exists or the root's own files cannot be read.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "intake", help="judge vendor return files as the pipeline would; report accepted / quarantined rows",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="Label Studio JSON export or COCO JSON in ROOT/vendors/<vendor>/inbox/<batch_id>/, "
                             "or a batch folder")
    add_root_option(parser)
    parser.add_argument("--vendor", default=None,
                        help="vendor name (default: read from the path .../vendors/<vendor>/inbox/...)")
    parser.add_argument("--ontology", type=Path, default=None, help="ontology JSON (default: data/ontology/v1.json)")
    parser.add_argument("--date", default="", metavar="YYYY-MM-DD",
                        help="judge as the run of this partition would: files the ledger holds for "
                             "this day are read again (default: every ingested file is a duplicate)")
    parser.set_defaults(func=run_intake)


def _vendor_from_paths(files: list[Path]) -> str | None:
    found = set()
    for f in files:
        parts = Path(os.path.abspath(f)).parts
        for i in range(len(parts) - 2):
            if parts[i] == "vendors" and parts[i + 2] == "inbox":
                found.add(parts[i + 1])
    return found.pop() if len(found) == 1 else None


def _returns_by_batch(files: list[Path], inbox: Path) -> dict[str, tuple[Path, list[Path]]]:
    """Group the files by batch folder; a batch folder (or the inbox) stands for its entries."""
    from annotation_pipeline.vendor.intake import batch_folder_entries

    inbox_abs = Path(os.path.abspath(inbox))
    grouped: dict[str, list[Path]] = {}
    for given in files:
        absolute = Path(os.path.abspath(given))
        rel = absolute.relative_to(inbox_abs).parts if absolute.is_relative_to(inbox_abs) else None
        is_dir = absolute.is_dir() and not absolute.is_symlink()
        if rel is not None and is_dir and len(rel) <= 1:
            with os.scandir(inbox_abs) as scan:
                top = sorted(scan, key=lambda e: os.fsencode(e.name))
            batches = [rel[0]] if rel else [e.name for e in top if e.is_dir(follow_symlinks=False)]
            for batch_id in batches:
                grouped.setdefault(batch_id, []).extend(batch_folder_entries(inbox_abs, batch_id))
            if not rel:  # loose entries of the inbox itself: judged (and quarantined) too
                grouped.setdefault("", []).extend(Path(e.path) for e in top if not e.is_dir(follow_symlinks=False))
            continue
        batch_id = rel[0] if rel is not None and len(rel) > 1 else ""  # "": intake says why it is misplaced
        grouped.setdefault(batch_id, []).append(given)
    return {batch_id: (inbox, paths) for batch_id, paths in grouped.items()}


def _read_table(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable table is one line for the user
        raise CliError(f"{path}: cannot read the {what} ({type(exc).__name__}); restore it or remove it") from None


def _load_tasks(layout: DataLayout, batch_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    frames, missing = [], []
    for batch_id in batch_ids:
        path = layout.handoff_tasks(batch_id)
        if path.is_file():
            frames.append(VENDOR_TASKS.conform(_read_table(path, "handoff tasks")))
        else:
            missing.append(str(path))
    return (pd.concat(frames, ignore_index=True) if frames else VENDOR_TASKS.empty()), missing


def run_intake(args: argparse.Namespace) -> int:
    from annotation_pipeline.layout import project_files
    from annotation_pipeline.ontology import load_ontology
    from annotation_pipeline.vendor.returns import IntakeLedger, process_vendor_returns

    files: list[Path] = list(args.files)
    # Every FILE that cannot be read is named (a pipe would block); a folder stands for the
    # entries in it, which are judged as the asset judges an inbox (odd entries quarantined).
    problems = [problem for f in files if not Path(f).is_dir() and (problem := input_file_problem(Path(f)))]
    if problems:
        raise CliError(*problems)
    layout = layout_for(args)
    vendor = args.vendor or _vendor_from_paths(files)
    if not vendor:
        raise CliError("cannot tell the vendor from the paths; pass --vendor NAME")
    ontology_path = Path(args.ontology or project_files().ontology)
    if problem := input_file_problem(ontology_path):
        raise CliError(f"{problem}; pass --ontology PATH with the ontology JSON")
    try:
        ontology = load_ontology(ontology_path).raw
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not shaped like one
        raise CliError(f"{ontology_path}: not an ontology ({type(exc).__name__}: {exc}); expected JSON with "
                       "name, version, scene.classes and objects") from None
    inbox = layout.inbox(vendor)
    returns = _returns_by_batch(files, inbox)
    tasks, missing_handoffs = _load_tasks(layout, sorted(b for b in returns if b))
    gold = (GOLD_LABELS.conform(_read_table(layout.gold_labels, "gold labels"))
            if layout.gold_labels.is_file() else GOLD_LABELS.empty())
    ledger_path = layout.intake_ledger(vendor)
    try:
        seen = IntakeLedger(ledger_path).seen_before(args.date)
    except Exception as exc:  # noqa: BLE001 - an unreadable ledger is one line for the user
        raise CliError(f"{ledger_path}: cannot read the intake ledger ({type(exc).__name__}); "
                       "restore it or remove it") from None
    report = process_vendor_returns(returns, tasks, gold, ontology, vendor=vendor, already_ingested_sha256=seen,
                                    partition_date=args.date, whole_batch_folders=False)
    emit(_result(report, vendor, inbox, missing_handoffs), args.json, _render)
    return 0


def _result(report, vendor: str, inbox: Path, missing_handoffs: list[str]) -> dict[str, Any]:
    files = report.files.astype(object).where(report.files.notna(), None)
    return {
        "vendor": vendor, "inbox": str(inbox), "missing_handoff_tasks": missing_handoffs,
        **report.counts(), "duplicate_files": report.counts()["files_duplicate"],
        "files": files.to_dict("records"),
        "quarantine": report.quarantine[["stage", "source_file", "record_ref", "reason", "detail"]].to_dict("records"),
        "expectations": [{"reason": o.reason, "success": o.success, "unexpected_count": o.unexpected_count}
                         for o in report.validation.expectations],
        "batch_health": [{"check": h.name, "passed": h.passed, "blocking": h.blocking} for h in report.health],
    }


def _render(result: dict[str, Any]) -> str:
    lines = [(f"vendor {result['vendor']}: received {result['received']}, accepted {result['accepted']}, "
              f"quarantined {result['quarantined']}, duplicate files {result['duplicate_files']}"),
             (f"files: {result['files_received']} = {result['files_accepted']} accepted + "
              f"{result['files_quarantined']} quarantined + {result['files_duplicate']} duplicate")]
    for path in result["missing_handoff_tasks"]:
        lines.append(f"warning: no handoff tasks at {path}; its rows are reported as unknown_task")
    for f in result["files"]:
        lines.append(f"  {f['status']:<14} {f['source_file']}  rows {f['n_received']} = "
                     f"{f['n_accepted']} accepted + {f['n_quarantined']} quarantined"
                     + (f"  [{f['reason']}]" if f["reason"] else ""))
    if result["quarantine"]:
        lines.append("quarantined:")
        for q in result["quarantine"]:
            where = f" {q['record_ref']}" if q["record_ref"] else ""
            lines.append(f"  [{q['stage']}] {q['reason']}: {q['source_file']}{where}: {q['detail']}")
    failing = [h["check"] + (" (blocking)" if h["blocking"] else "") for h in result["batch_health"] if not h["passed"]]
    lines.append("batch health: " + ("all checks pass" if not failing else "failing " + ", ".join(failing)))
    return "\n".join(lines)
