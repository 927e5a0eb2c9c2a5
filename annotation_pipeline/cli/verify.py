"""annotation-pipeline verify: is the data root's history what was published? For auditors and CI.

Checks the audit log's hash chain, every release's files against its manifest, each manifest
against its index line and audit event, the index against the release folders and .dvc
files, and dvc status of every release against the workspace and the DVC remote (three
anchors, so that rewriting one of them is not enough to hide a change).
Exits 0 when everything is intact, 1 naming each problem, one line each.
"""

from __future__ import annotations

import argparse

from annotation_pipeline.cli.common import CliError, add_root_option, emit, settings_for


def register(sub: argparse._SubParsersAction) -> None:
    verify = sub.add_parser("verify", help="check the audit chain, release manifests, index and DVC remote",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_root_option(verify)
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from annotation_pipeline.release.store import DvcReleaseStore

    settings = settings_for(args)
    if not settings.data_root.is_dir():
        raise CliError(f"no data root at {settings.data_root}: pass --root DIR or set $ANNOTATION_PIPELINE_ROOT")
    store = DvcReleaseStore.from_settings(settings)
    report = store.check(with_dvc=True)
    result = {"root": str(settings.data_root), "intact": report.intact, "releases": report.releases,
              "audit_lines": report.audit_lines, "dvc_remote": store.remote_url,
              "problems": report.problems, "notes": report.notes}
    emit(result, args.json, _render)
    if report.problems:
        raise CliError(*report.problems)
    return 0


def _render(r: dict) -> str:
    state = "intact" if r["intact"] else f"{len(r['problems'])} problem(s), listed on stderr"
    lines = [f"{r['root']}: {state}: {r['releases']} release(s), {r['audit_lines']} audit line(s) chained, "
             f"DVC remote {r['dvc_remote']}"]
    return "\n".join(lines + [f"  note: {n}" for n in r["notes"]])
