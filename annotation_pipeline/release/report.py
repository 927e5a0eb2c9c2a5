"""What goes into a release beside the labels: per-label provenance and the quality report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, CONSENSUS_LABELS, PROVENANCE, RAW_ITEMS, require_columns

PROVENANCE_COLUMNS = PROVENANCE.column_names  # kept for callers that name the columns
_LABEL_INPUT = ["item_id", "kind", "label", "annotation_ids"]
_ANSWER_INPUT = ["annotation_id", "annotator_id", "vendor", "batch_id", "task_id", "label", "source_file",
                 "source_sha256", "ontology_version", "guidelines_version", "model_version"]
# The uploaded file name is not taken: it may hold personal data and stays in the restricted store.
_RAW_INPUT = ["item_id", "raw_path", "partition_date"]


def build_provenance(labels: pd.DataFrame, annotations: pd.DataFrame, raw_items: pd.DataFrame) -> pd.DataFrame:
    """One row per (released label, vendor answer behind it), joined to the raw item.

    ``item_id`` is the sha256 of the raw file's bytes, so the trace ends in a file whose
    identity anyone can recompute. The raw file is named by its raw store path only: the
    uploaded name may hold personal data and stays in the restricted store.
    """
    require_columns(labels, _LABEL_INPUT, f"{CONSENSUS_LABELS.name} (provenance input)")
    require_columns(annotations, _ANSWER_INPUT, f"{ANNOTATIONS.name} (provenance input)")
    require_columns(raw_items, _RAW_INPUT, f"{RAW_ITEMS.name} (provenance input)")
    exploded = (labels.assign(annotation_id=labels["annotation_ids"].str.split(" "))
                .explode("annotation_id")[["item_id", "kind", "label", "annotation_id"]]
                .rename(columns={"kind": "label_kind"}))
    answers = annotations[_ANSWER_INPUT].rename(columns={"label": "answer_label"})
    raw = raw_items[_RAW_INPUT].rename(columns={"partition_date": "raw_partition_date"})
    out = exploded.merge(answers, on="annotation_id", how="left").merge(raw, on="item_id", how="left")
    return PROVENANCE.conform(out.astype({c: "string" for c in PROVENANCE.column_names}))


def build_quality_report(dataset: pd.DataFrame, partition_date: str, day_labels: pd.DataFrame,
                         review_queue: pd.DataFrame, agreement: pd.DataFrame, scorecards: pd.DataFrame,
                         quarantine: pd.DataFrame) -> dict:
    """A JSON-able report: dataset size, the day's consensus and agreement, quarantine, vendors."""
    batch = agreement[agreement["scope"] == "batch"]
    per_class = agreement[agreement["scope"] == "class"]
    report = {
        "dataset": {
            "labels": int(len(dataset)), "items": int(dataset["item_id"].nunique()),
            "partitions": int(dataset["partition_date"].nunique()),
            **{f"labels_{k}": int(v) for k, v in dataset["kind"].value_counts().items()},
            **{f"class_{k}": int(v) for k, v in dataset["label"].value_counts().items()},
        },
        "partition": {
            "date": partition_date, "labels": int(len(day_labels)),
            # None, not NaN: the report is written as strict JSON
            "mean_confidence": float(day_labels["confidence"].mean()) if len(day_labels) else None,
            # queued for a reviewer; deferred and dismissed rows are counted apart
            "review_queue": int((review_queue["status"] == "queued").sum()) if "status" in review_queue
            else int(len(review_queue)),
            **({f"review_{s}": int(n) for s, n in review_queue["status"].value_counts().items() if s != "queued"}
               if "status" in review_queue else {}),
            "quarantined_records": int(len(quarantine)),
            **{f"quarantined_{k}": int(v) for k, v in quarantine["reason"].value_counts().items()},
        },
        "agreement": {f"{r.key}:{r.metric}": float(r.value) for r in batch.itertuples() if pd.notna(r.value)},
        "agreement_per_class": [
            {"class": k, **{m: round(float(v), 4) for m, v in g.set_index("metric")["value"].items() if pd.notna(v)}}
            for k, g in per_class.groupby("key")],
        "annotators": scorecards.replace({np.nan: None}).round(4).to_dict("records") if len(scorecards) else [],
    }
    return report
