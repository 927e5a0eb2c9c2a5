"""A small labeled day, as the release step receives it: consensus labels and the tables behind them.

Shared by the release tests and the ``verify`` CLI tests; the frames follow the contracts (annotation_pipeline.contracts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import (
    AGREEMENT_METRICS,
    ANNOTATIONS,
    AUTO_ACCEPTED_LABELS,
    CONSENSUS_LABELS,
    REVIEW_DECISIONS,
)
from annotation_pipeline.release.report import build_provenance, build_quality_report
from annotation_pipeline.release.store import DvcReleaseStore
from annotation_pipeline.settings import load_settings


def day_tables(date: str, n: int = 3, label: str = "car") -> dict[str, pd.DataFrame]:
    """The release step's inputs for one day: ``n`` items with one box each, three answers per box."""
    tag = date.replace("-", "")
    items = [f"item{tag}{k}" for k in range(n)]
    answers = [f"ann{tag}{k}{a}" for k in range(n) for a in "abc"]
    consensus = CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": items, "kind": "box", "label": label,
        "x_min": np.arange(n, dtype=float), "y_min": 1.0, "x_max": np.arange(n) + 10.0, "y_max": 11.0,
        "geometry_wkb": None, "confidence": 0.9, "n_annotators": 3, "n_assigned": 3, "method": "iou_cluster",
        "annotation_ids": [" ".join(answers[3 * k:3 * k + 3]) for k in range(n)],
    }))
    returned = pd.DataFrame({
        "annotation_id": answers, "annotator_id": [f"w{a}" for _ in range(n) for a in "abc"], "vendor": "simvendor",
        "batch_id": f"batch-{date}", "task_id": [f"t{k}" for k in range(n) for _ in "abc"], "label": label,
        "source_file": "export.json", "source_sha256": "0" * 64, "ontology_version": "1.0.0",
        "guidelines_version": "1.0.0", "model_version": "prelabel-test",
        "item_id": [i for i in items for _ in "abc"], "kind": "box", "is_gold": False,
        "x_min": np.repeat(np.arange(n, dtype=float), 3), "y_min": 1.0,
        "x_max": np.repeat(np.arange(n) + 10.0, 3), "y_max": 11.0, "geometry_wkb": None,
        "image_width": 320.0, "image_height": 240.0, "lead_time_s": 5.0,
    })
    returned = ANNOTATIONS.conform(returned)
    anonymized = pd.DataFrame({"item_id": items, "image_path": [f"anonymized/{date}/{i}.png" for i in items],
                               "width": 320, "height": 240})
    raw = pd.DataFrame({"item_id": items, "source_file": [f"upload{k}.png" for k in range(n)],
                        "raw_path": [f"raw/{date}/{i}.png" for i in items], "partition_date": date})
    agreement = AGREEMENT_METRICS.conform(pd.DataFrame({
        "scope": ["batch", "class"], "key": [f"batch-{date}", label], "metric": "mean_iou", "value": 0.8, "n": n}))
    return {"consensus_labels": consensus, "returned_annotations": returned, "raw_items": raw,
            "anonymized_items": anonymized,
            "agreement_metrics": agreement, "review_queue": consensus.iloc[:0], "annotator_scorecards": pd.DataFrame(),
            "review_decisions": REVIEW_DECISIONS.empty(), "auto_accepted_labels": AUTO_ACCEPTED_LABELS.empty()}


def review_decision(date: str, item_id: str, decision: str, new_label: str | None = None, *, kind: str = "choice",
                    candidate: str = "day", annotation_ids: str = "", reviewer_id: str = "rev-01",
                    decided_at: str = "2026-11-30T09:00:00Z", reason: str = "", is_gold: bool = False,
                    box: tuple[float, float, float, float] | None = None, decision_id: str | None = None
                    ) -> pd.DataFrame:
    """One REVIEW_DECISIONS row, as the ``review_decisions`` asset writes it."""
    final = {"confirm": candidate, "override": new_label, "reject": None}[decision]
    x_min, y_min, x_max, y_max = box or (np.nan,) * 4
    return REVIEW_DECISIONS.conform(pd.DataFrame({
        "decision_id": [decision_id or f"d-{item_id}-{decision}"], "review_task_id": f"rv-{item_id}-{kind}",
        "item_id": item_id, "kind": kind, "candidate_label": candidate, "decision": decision,
        "new_label": [new_label], "final_label": [final], "x_min": x_min, "y_min": y_min, "x_max": x_max,
        "y_max": y_max, "confidence": 0.5, "n_assigned": 3, "annotation_ids": annotation_ids,
        "reviewer_id": reviewer_id, "decided_at": decided_at, "reason": reason, "is_gold": is_gold,
        "correct": [pd.NA], "superseded": False, "source_file": f"{reviewer_id}.json", "source_sha256": "1" * 64}))


def store_for(root: Path) -> DvcReleaseStore:
    """The store the CLI uses for ``root`` (same DVC remote: ``ROOT/dvc-remote`` on the local profile)."""
    return DvcReleaseStore.from_settings(load_settings(root=root, profile="local"))


def release_day(store: DvcReleaseStore, date: str, n: int = 3, label: str = "car"):
    """What the release step does for ``date``, through the domain publish path."""
    t = day_tables(date, n, label)

    def report_for(dataset: pd.DataFrame, parent_labels: pd.DataFrame | None) -> dict:
        return build_quality_report(dataset, date, t["consensus_labels"], t["review_queue"], t["agreement_metrics"],
                                    t["annotator_scorecards"], pd.DataFrame({"reason": pd.Series(dtype="string")}))

    provenance = build_provenance(t["consensus_labels"], t["returned_annotations"], t["raw_items"])
    return store.release_partition(date, t["consensus_labels"], provenance, report_for, {"ontology": "1.0.0"})
