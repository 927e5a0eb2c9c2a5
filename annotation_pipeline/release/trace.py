"""An item's whole path, hop by hop: what an auditor asks to see behind one released label;
and the items there are to trace (``traceable_items``).

raw file (content hash) -> redactions (counted as anonymization counts them) ->
pre-label shown to annotators (model version) ->
auto-accept (machine labels released without a vendor, with their evidence) ->
vendor batch and task -> every answer with its QA outcome (accepted, or quarantined and why)
-> answers that were not used and why (review queue, deferred, dismissed) -> review decisions
-> the released labels (consensus method and confidence) -> every release that contains it.

Everything is read from what the pipeline persisted: the release's provenance, the day's
tables (one partition each) and every release's labels. Values are made JSON-safe here
(NaN and missing values become None), so ``trace --json`` is strict JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from annotation_pipeline.layout import DataLayout

TableReader = Callable[[str, str], pd.DataFrame | None]


def local_tables(layout: DataLayout) -> TableReader:
    """Read an asset's partition from the local table store, None when it was never written."""
    def read(asset: str, partition: str) -> pd.DataFrame | None:
        path = layout.table([asset], partition)
        return pd.read_parquet(path) if path.is_file() else None
    return read


def records(frame: pd.DataFrame | None, drop: tuple[str, ...] = ("geometry_wkb",)) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts: NaN / NA -> None, numpy scalars -> Python, bytes dropped."""
    if frame is None or frame.empty:
        return []
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in out:
        for key, value in row.items():
            if isinstance(value, np.generic):
                row[key] = value.item()
            if isinstance(row[key], float) and not np.isfinite(row[key]):
                row[key] = None
    return out


def _for_item(frame: pd.DataFrame | None, item_id: str) -> pd.DataFrame | None:
    return None if frame is None or "item_id" not in frame else frame[frame["item_id"] == item_id]


def _raw_hop(layout: DataLayout, provenance: pd.DataFrame, item_id: str) -> list[dict[str, Any]]:
    raws = records(provenance[["raw_path", "raw_partition_date"]].drop_duplicates())
    for raw in raws:  # the item id is the content hash: recompute it from the stored bytes
        path = layout.root / str(raw["raw_path"]) if raw["raw_path"] else None
        if path is not None and path.is_file():
            raw["content_hash_matches"] = hashlib.sha256(path.read_bytes()).hexdigest()[:len(item_id)] == item_id
        else:
            raw["content_hash_matches"] = None  # the raw store is not on this machine
    return raws


def _answers_hop(answers: pd.DataFrame | None, quarantine: pd.DataFrame | None, used: set[str],
                 unused_reasons: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """(every answer with its QA outcome, the accepted answers no released label uses, with why)."""
    shown = []
    for row in records(answers):
        row["qa_outcome"] = "accepted"
        shown.append(row)
    for row in records(quarantine):
        row["qa_outcome"] = f"quarantined: {row.get('reason')}"
        shown.append(row)
    not_used = [{**row, "why": unused_reasons.get(row["annotation_id"], "not merged into a released label")}
                for row in shown if row["qa_outcome"] == "accepted" and row["annotation_id"] not in used]
    return shown, not_used


def _unused_reasons(review_queue: pd.DataFrame | None) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for row in records(review_queue):
        for annotation_id in str(row.get("annotation_ids") or "").split():
            reasons[annotation_id] = f"{row.get('status') or 'queued'} for review: {row.get('reason')}"
    return reasons


REDACTION_UNIT = "values, metadata tags and image regions"


def redaction_summary(log: pd.DataFrame | None, anonymized: pd.DataFrame | None) -> dict[str, Any]:
    """The item's redactions counted the way the anonymization stage counts them
    (``anonymized_items.n_redactions``, the demo's "N redactions"): the log's ``count`` summed,
    each redacted value, metadata tag or image region once, and by kind, so the kinds add up to
    the total. ``log_entries`` is the rows behind them (one per field, detector and action);
    ``recorded_total`` what ``anonymized_items`` says, None when that table is not here."""
    if log is None or log.empty:
        by_kind: dict[str, int] = {}
        entries = 0
    else:
        sums = log.groupby(log["kind"].astype(str))["count"].sum()
        by_kind = {str(k): int(v) for k, v in sums.sort_index().items()}
        entries = len(log)
    recorded = None
    if anonymized is not None and "n_redactions" in anonymized and len(anonymized):
        value = anonymized["n_redactions"].iloc[0]
        recorded = None if pd.isna(value) else int(value)
    return {"total": sum(by_kind.values()), "unit": REDACTION_UNIT, "by_kind": by_kind,
            "log_entries": entries, "recorded_total": recorded}


def _split_review_stage(quarantine: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(answers' quarantine, review decisions' quarantine): a quarantined decision is not an answer."""
    if quarantine is None or "stage" not in quarantine:
        return quarantine, None
    is_review = (quarantine["stage"] == "review").to_numpy(bool)
    return quarantine[~is_review], quarantine[is_review]


def trace_item(layout: DataLayout, item_id: str, version: str, labels: pd.DataFrame, provenance: pd.DataFrame,
               release_labels: Callable[[str], pd.DataFrame], versions: list[str],
               read_table: TableReader | None = None) -> dict[str, Any]:
    """Every hop of ``item_id`` in release ``version``; ``release_labels(v)`` reads release v's labels."""
    read_table = read_table or local_tables(layout)
    mine = labels[labels["item_id"] == item_id]
    partition = str(mine["partition_date"].iloc[0])
    prov = provenance[provenance["item_id"] == item_id]
    tasks = _for_item(read_table("vendor_batches", partition), item_id)
    quarantine, review_quarantine = _split_review_stage(_for_item(read_table("quarantine", partition), item_id))
    used = {a for ids in mine["annotation_ids"].fillna("") for a in str(ids).split()}
    review = _for_item(read_table("review_queue", partition), item_id)
    answers, not_used = _answers_hop(_for_item(read_table("returned_annotations", partition), item_id),
                                     quarantine, used, _unused_reasons(review))
    decisions = _for_item(read_table("review_decisions", partition), item_id)
    prelabels = _for_item(read_table("prelabels", partition), item_id)
    auto_accepted = _for_item(read_table("auto_accepted_labels", partition), item_id)
    redactions = _for_item(read_table("redaction_log", partition), item_id)
    return {
        "item_id": item_id, "release": version, "partition": partition,
        "raw_item": _raw_hop(layout, prov, item_id),
        "redactions": records(redactions),
        "redaction_summary": redaction_summary(redactions, _for_item(read_table("anonymized_items", partition),
                                                                     item_id)),
        "prelabels": records(prelabels),
        "model_versions": sorted(set(prelabels["model_version"].dropna())) if prelabels is not None else [],
        "auto_accepted": records(auto_accepted),
        "batches": records(tasks),
        "answers": answers,
        "answers_not_used": not_used,
        "review": records(review),
        "review_decisions": records(decisions),
        "review_decisions_quarantined": records(review_quarantine),
        "labels": records(mine),
        "vendor_answers": records(prov),
        "releases_containing_item": [v for v in versions if (release_labels(v)["item_id"] == item_id).any()],
    }


LIST_COLUMNS = ["item_id", "kind", "label", "partition_date"]


def traceable_items(release_labels: Callable[[str], pd.DataFrame], versions: list[str]) -> list[dict[str, Any]]:
    """Every item ``trace`` can follow in ``versions`` (oldest first), as JSON-safe dicts sorted by id:
    ``item_id``, ``partition_date``, ``releases`` (the versions holding it, in order), ``latest_release``
    and its labels there (``n_labels``; ``labels``: kind, label and how many of them).

    Released labels carry no id of their own: an item id, with a release, names them.
    ``release_labels(v)`` reads release v's labels (at least ``LIST_COLUMNS``)."""
    frames = [release_labels(v)[LIST_COLUMNS].assign(rank=k) for k, v in enumerate(versions)]
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*LIST_COLUMNS, "rank"])
    if labels.empty:
        return []
    labels = labels.astype({"item_id": str, "kind": str, "label": str, "partition_date": str})
    held = labels.drop_duplicates(["item_id", "rank"]).sort_values(["item_id", "rank"])
    named = np.asarray(versions, dtype=object)
    releases = held.groupby("item_id")["rank"].agg(lambda r: named[r.to_numpy()].tolist())
    latest = labels[labels["rank"] == labels.groupby("item_id")["rank"].transform("max")]
    counts = latest.groupby(["item_id", "kind", "label"]).size().rename("count").reset_index()
    per_item = counts.groupby("item_id")[["kind", "label", "count"]].apply(lambda g: g.to_dict("records"))
    frame = pd.DataFrame({
        "item_id": releases.index,
        "partition_date": latest.groupby("item_id")["partition_date"].first().reindex(releases.index).to_numpy(),
        "releases": releases.to_numpy(),
        "latest_release": [r[-1] for r in releases],
        "n_labels": latest.groupby("item_id").size().reindex(releases.index).to_numpy(),
        "labels": per_item.reindex(releases.index).to_numpy(),
    })
    out = frame.to_dict("records")
    for row in out:  # numpy ints -> Python, for strict JSON
        row["n_labels"] = int(row["n_labels"])
        row["labels"] = [{**c, "count": int(c["count"])} for c in row["labels"]]
    return out
