"""``annotation-pipeline intake FILE...``: parse vendor returns and report, row by row."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd

from annotation_pipeline.cli.common import CliError, add_root_option, emit, input_file_problem, layout_for
from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.layout import DataLayout

HELP = """\
Parse vendor return files and report, file by file and row by row, what is
accepted and what is quarantined with which reason.

The same path as the returned_annotations asset: intake, then the row-level QA
suite. Files must sit in ROOT/vendors/VENDOR/inbox/BATCH_ID/; the batch's
handoff tasks are read from ROOT/handoff/BATCH_ID/tasks.parquet. Without that
file the rows cannot be matched to tasks and are reported quarantined as
unknown_task (the report names the file looked for), rather than guessed.

Exit 0 whenever a report was produced, also with quarantined rows or files;
exit 1 when a FILE is missing or is not a regular file, naming each one.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "intake", help="parse vendor return files; report accepted / quarantined rows with reasons",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="Label Studio JSON export or COCO JSON in ROOT/vendors/<vendor>/inbox/<batch_id>/")
    add_root_option(parser)
    parser.add_argument("--vendor", default=None,
                        help="vendor name (default: read from the path .../vendors/<vendor>/inbox/...)")
    parser.add_argument("--ontology", type=Path, default=None, help="ontology JSON (default: data/ontology/v1.json)")
    parser.add_argument("--no-qa", action="store_true", help="intake only, skip the row-level QA suite")
    parser.set_defaults(func=run_intake)


def _vendor_from_paths(files: list[Path]) -> str | None:
    found = set()
    for f in files:
        parts = Path(os.path.abspath(f)).parts
        for i in range(len(parts) - 2):
            if parts[i] == "vendors" and parts[i + 2] == "inbox":
                found.add(parts[i + 1])
    return found.pop() if len(found) == 1 else None


def _load_tasks(layout: DataLayout, batch_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    frames, missing = [], []
    for batch_id in batch_ids:
        path = layout.handoff_tasks(batch_id)
        if path.is_file():
            frames.append(VENDOR_TASKS.conform(pd.read_parquet(path)))
        else:
            missing.append(str(path))
    return (pd.concat(frames, ignore_index=True) if frames else VENDOR_TASKS.empty()), missing


def run_intake(args: argparse.Namespace) -> int:
    from annotation_pipeline.layout import project_files
    from annotation_pipeline.ontology import load_ontology
    from annotation_pipeline.vendor.intake import intake_vendor_returns

    files: list[Path] = list(args.files)
    problems = [problem for f in files if (problem := input_file_problem(f))]
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
        ontology = load_ontology(ontology_path)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not shaped like one
        raise CliError(f"{ontology_path}: not an ontology ({type(exc).__name__}: {exc}); expected JSON with "
                       "name, version, scene.classes and objects") from None
    inbox = layout.inbox(vendor)
    batch_ids = sorted({Path(os.path.abspath(f)).relative_to(os.path.abspath(inbox)).parts[0]
                        for f in files if Path(os.path.abspath(f)).is_relative_to(os.path.abspath(inbox))
                        and len(Path(os.path.abspath(f)).relative_to(os.path.abspath(inbox)).parts) > 1})
    tasks, missing_handoffs = _load_tasks(layout, batch_ids)

    intake = intake_vendor_returns(files, inbox, tasks, ontology, vendor=vendor)
    quarantine = intake.quarantine
    accepted = intake.annotations
    expectations: list[dict[str, Any]] = []
    if not args.no_qa and len(accepted):
        from annotation_pipeline.qa.suite import validate_annotations
        rows = validate_annotations(accepted, tasks, ontology)
        accepted = rows.accepted
        quarantine = pd.concat([quarantine, rows.quarantined], ignore_index=True)
        expectations = [{"reason": o.reason, "success": o.success, "unexpected_count": o.unexpected_count}
                        for o in rows.expectations]
    result = {
        "vendor": vendor, "inbox": str(inbox), "missing_handoff_tasks": missing_handoffs,
        "received": intake.n_received, "accepted": len(accepted), "quarantined": len(quarantine),
        "duplicate_files": intake.n_duplicate_files,
        "files": intake.files.to_dict("records"),
        "quarantine": quarantine[["stage", "source_file", "record_ref", "reason", "detail"]].to_dict("records"),
        "expectations": expectations,
    }
    emit(result, args.json, _render)
    return 0


def _render(result: dict[str, Any]) -> str:
    lines = [f"vendor {result['vendor']}: received {result['received']}, accepted {result['accepted']}, "
             f"quarantined {result['quarantined']}, duplicate files {result['duplicate_files']}"]
    for path in result["missing_handoff_tasks"]:
        lines.append(f"warning: no handoff tasks at {path}; its rows are reported as unknown_task")
    lines.append("files:")
    for f in result["files"]:
        lines.append(f"  {f['status']:<14} {f['source_file']}  rows {f['n_received']} = "
                     f"{f['n_accepted']} accepted + {f['n_quarantined']} quarantined"
                     + (f"  [{f['reason']}]" if f["reason"] else ""))
    if result["quarantine"]:
        lines.append("quarantined:")
        for q in result["quarantine"]:
            where = f" {q['record_ref']}" if q["record_ref"] else ""
            lines.append(f"  [{q['stage']}] {q['reason']}: {q['source_file']}{where}: {q['detail']}")
    return "\n".join(lines)
