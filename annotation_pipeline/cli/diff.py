"""annotation-pipeline diff VERSION_A VERSION_B: what changed between two releases.

Labels added, changed (with the old and the new class) and removed, by item and class.
Scene labels are matched by item; objects within an item by overlap (IoU >= --iou).
Exit 0 with the difference (an empty one too), 1 when a version is unknown or unreadable.
"""

from __future__ import annotations

import argparse
from typing import Any

from annotation_pipeline.cli.common import CliError, add_root_option, emit, settings_for


def _iou(value: str) -> float:
    try:
        iou = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 < iou <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside (0, 1]")
    return iou


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diff", help="labels added, changed and removed between two releases",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_a", metavar="VERSION_A", help="the older release, e.g. v0001")
    parser.add_argument("version_b", metavar="VERSION_B", help="the newer release, e.g. v0002")
    add_root_option(parser)
    parser.add_argument("--iou", type=_iou, default=0.5, help="overlap at which two objects are the same (default 0.5)")
    parser.add_argument("--limit", type=int, default=50, help="changes listed in the text output (default 50)")
    parser.set_defaults(func=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    from annotation_pipeline.release.diff import diff_releases
    from annotation_pipeline.release.store import DvcReleaseStore

    store = DvcReleaseStore.from_settings(settings_for(args))
    known = [r.version for r in store.list_releases()]
    unknown = [v for v in (args.version_a, args.version_b) if v not in known]
    if unknown:
        raise CliError(*(f"release {v!r} not found under {store.root}; known: {', '.join(known) or 'none'}"
                         for v in unknown))
    difference = diff_releases(store.read_table(args.version_a, "labels"), store.read_table(args.version_b, "labels"),
                               iou_threshold=args.iou)
    changes = difference.changes
    result = {
        "from": args.version_a, "to": args.version_b, **difference.summary(),
        "by_class": [{"label": label, **row} for label, row in difference.by_class().to_dict("index").items()],
        "changes": changes.astype(object).where(changes.notna(), None).to_dict("records"),
        "limit": args.limit,
    }
    emit(result, args.json, _render)
    return 0


def _render(r: dict[str, Any]) -> str:
    lines = [f"{r['from']} -> {r['to']}: {r['added']} added, {r['changed']} changed, {r['removed']} removed, "
             f"{r['unchanged']} unchanged ({r['items_touched']} items touched)"]
    if r["by_class"]:
        lines.append("  by class     added  removed  changed from  changed to")
        lines += [f"  {c['label']:<12} {c['added']:>5}  {c['removed']:>7}  {c['changed_from']:>12}  {c['changed_to']:>10}"
                  for c in r["by_class"]]
    for c in r["changes"][: r["limit"]]:
        value = {"added": f"+ {c['new_label']}", "removed": f"- {c['old_label']}",
                 "changed": f"{c['old_label']} -> {c['new_label']}"}[c["change"]]
        lines.append(f"  {c['change']:<8} {c['item_id']} {c['kind']:<8} {value}")
    if len(r["changes"]) > r["limit"]:
        lines.append(f"  ... and {len(r['changes']) - r['limit']} more (--json lists every change)")
    return "\n".join(lines)
