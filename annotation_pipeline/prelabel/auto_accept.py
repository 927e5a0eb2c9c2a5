"""Auto-accept: pre-labels released without a vendor, only where the model is measured right.

The evidence is the model's precision on *held-out* gold (gold items it did not learn from),
per kind, class and score band: a scene choice is right when it is the gold scene, a box
when a gold object of the same class overlaps it at IoU >= 0.5. A cell earns auto-accept
when its measured precision meets the target (default 0.98) on at least ``min_gold`` gold
labels: one error in 50 is already 0.98, so fewer labels cannot show the target is met.

An item skips the vendor only when *every* pre-label of it sits in an earning cell (a scene
and its boxes): the item's released labels are then the model's, marked ``machine`` with
their evidence. Precision is what is measured; an object the model did not propose at all is
not (recall), which is why an item with any doubtful pre-label still goes to people.

A seeded, reproducible share of the accepted items (``check_share``, default 10 %) still goes
to the vendor: their consensus is compared with the machine labels. When that check, or the
gold evidence, falls below the target, auto-accept turns itself off for the model version
(an ``auto_accept_switched_off`` event in the audit log) until a new model is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.audit import append_audit_event, read_audit_events
from annotation_pipeline.contracts import AUTO_ACCEPT_EVIDENCE, AUTO_ACCEPTED_LABELS, CONSENSUS_LABELS

# Score bands of calibrated scores: finer near 1, where auto-accept can happen.
SCORE_BAND_EDGES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
MATCH_IOU = 0.5
SWITCHED_OFF_EVENT = "auto_accept_switched_off"
MACHINE_METHOD = "auto_accept"
_BOX = ["x_min", "y_min", "x_max", "y_max"]


@dataclass(frozen=True)
class AutoAcceptPolicy:
    target_precision: float = 0.98
    min_gold: int = 50          # gold labels a cell needs before its precision counts
    check_share: float = 0.10   # accepted items still sent to the vendor, as a check
    seed: int = 0


def score_band(scores: pd.Series) -> pd.Series:
    """``"0.95-0.99"``-style band names; a score of exactly 1 falls in the top band."""
    edges = np.asarray(SCORE_BAND_EDGES)
    index = np.clip(np.searchsorted(edges, scores.to_numpy(float), side="right") - 1, 0, len(edges) - 2)
    names = np.array([f"{lo:.2f}-{hi:.2f}" for lo, hi in pairwise(edges)])
    return pd.Series(names[index], index=scores.index, dtype="string")


def _pairwise_iou(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Row-wise IoU of two aligned box frames."""
    x0 = np.maximum(a["x_min"].to_numpy(float), b["x_min"].to_numpy(float))
    y0 = np.maximum(a["y_min"].to_numpy(float), b["y_min"].to_numpy(float))
    x1 = np.minimum(a["x_max"].to_numpy(float), b["x_max"].to_numpy(float))
    y1 = np.minimum(a["y_max"].to_numpy(float), b["y_max"].to_numpy(float))
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-9)


def _area(f: pd.DataFrame) -> np.ndarray:
    return (f["x_max"].to_numpy(float) - f["x_min"].to_numpy(float)) * (
        f["y_max"].to_numpy(float) - f["y_min"].to_numpy(float))


def labels_correct(predicted: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """For each predicted row (PRELABELS shape): is it right against ``truth`` (labels with boxes)?

    A choice is right when it names the true choice of its item; a box when a true object of the
    same class on the same item overlaps it at IoU >= 0.5.
    """
    keyed = predicted.reset_index(drop=True).rename_axis("row").reset_index()
    choices = keyed[keyed["kind"] == "choice"].merge(
        truth.loc[truth["kind"] == "choice", ["item_id", "label"]].drop_duplicates("item_id"),
        on="item_id", suffixes=("", "_true"))
    right = pd.Series(False, index=keyed["row"])
    right[choices.loc[choices["label"] == choices["label_true"], "row"]] = True
    objects = truth.loc[(truth["kind"] != "choice") & truth["x_min"].notna(), ["item_id", "label", *_BOX]]
    pairs = keyed[keyed["kind"] != "choice"].merge(objects, on=["item_id", "label"], suffixes=("", "_true"))
    if len(pairs):
        true_boxes = pairs[[f"{c}_true" for c in _BOX]].set_axis(_BOX, axis=1)
        hit = pairs.loc[_pairwise_iou(pairs[_BOX], true_boxes) >= MATCH_IOU, "row"].unique()
        right[hit] = True
    return pd.Series(right.to_numpy(), index=predicted.index)


def measure_precision(predicted: pd.DataFrame, gold: pd.DataFrame, measured_on: str) -> pd.DataFrame:
    """AUTO_ACCEPT_EVIDENCE: precision of ``predicted`` (on held-out gold items) per kind, class, band."""
    on_gold = predicted[predicted["item_id"].isin(gold["item_id"])]
    if on_gold.empty:
        return AUTO_ACCEPT_EVIDENCE.empty()
    frame = on_gold.assign(band=score_band(on_gold["score"]), correct=labels_correct(on_gold, gold))
    cells = frame.groupby(["model_version", "kind", "label", "band"], observed=True).agg(
        n=("correct", "size"), correct=("correct", "sum")).reset_index()
    cells["precision"] = cells["correct"] / cells["n"]
    cells["measured_on"] = measured_on
    return AUTO_ACCEPT_EVIDENCE.conform(cells)


def switched_off(root: Path, model_version: str) -> dict | None:
    """The audit event that switched auto-accept off for ``model_version``, if any."""
    events = [e for e in read_audit_events(root)
              if e.get("event") == SWITCHED_OFF_EVENT and e.get("model_version") == model_version]
    return events[-1] if events else None


def switch_off(root: Path, model_version: str, reason: str, precision: float, n: int) -> dict:
    return append_audit_event(root, SWITCHED_OFF_EVENT, model_version=model_version, reason=reason,
                              precision=round(float(precision), 4), n=int(n))


def earning_cells(evidence: pd.DataFrame, policy: AutoAcceptPolicy) -> pd.DataFrame:
    return evidence[(evidence["n"] >= policy.min_gold) & (evidence["precision"] >= policy.target_precision)]


def _check_draw(item_ids: pd.Series, seed: int) -> np.ndarray:
    """A reproducible uniform draw in [0, 1) per item: the same item is always checked or not."""
    hashed = pd.util.hash_pandas_object(item_ids.astype(str) + f"#{seed}", index=False).to_numpy()
    return hashed / float(2 ** 64)


def accept(prelabels: pd.DataFrame, evidence: pd.DataFrame, policy: AutoAcceptPolicy) -> pd.DataFrame:
    """AUTO_ACCEPTED_LABELS: pre-labels of items whose every pre-label earns auto-accept.

    ``evidence`` must be about the pre-labels' model version (cells of another model never
    count). ``sent_for_check`` marks the items that still go to the vendor, as the check.
    """
    cells = earning_cells(evidence, policy)[["model_version", "kind", "label", "band", "precision", "n"]]
    if prelabels.empty or cells.empty:
        return AUTO_ACCEPTED_LABELS.empty()
    banded = prelabels.assign(band=score_band(prelabels["score"]))
    joined = banded.merge(cells, on=["model_version", "kind", "label", "band"], how="left")
    earned = joined["precision"].notna().groupby(joined["item_id"]).all()
    has_scene = joined["kind"].eq("choice").groupby(joined["item_id"]).any()
    items = earned.index[earned & has_scene.reindex(earned.index, fill_value=False)]
    accepted = joined[joined["item_id"].isin(items)].rename(
        columns={"band": "score_band", "precision": "measured_precision", "n": "n_gold"})
    accepted["sent_for_check"] = _check_draw(accepted["item_id"], policy.seed) < policy.check_share
    return AUTO_ACCEPTED_LABELS.conform(accepted)


def check_precision(accepted: pd.DataFrame, consensus: pd.DataFrame) -> tuple[float | None, int]:
    """(precision, n) of the machine labels of the check items against the vendor's consensus;
    (None, 0) when no checked item has come back yet."""
    checked = accepted[accepted["sent_for_check"] & accepted["item_id"].isin(consensus["item_id"])]
    if checked.empty:
        return None, 0
    right = labels_correct(checked, consensus)
    return float(right.mean()), len(right)


def released_labels(labels: pd.DataFrame, accepted: pd.DataFrame) -> pd.DataFrame:
    """The day's labels to release: people's labels (vendor consensus, with review decisions
    applied: ``label_source`` consensus or review), then the machine labels of auto-accepted
    items that did not go to the vendor (``label_source`` machine), with their evidence."""
    people = labels if "label_source" in labels else labels.assign(label_source="consensus")
    people = people.assign(auto_accept_evidence=pd.NA)
    machine = accepted[~accepted["sent_for_check"] & ~accepted["item_id"].isin(people["item_id"])]
    if machine.empty:
        return people.astype({"label_source": "string", "auto_accept_evidence": "string"})
    evidence = ("band " + machine["score_band"] + ": precision " + machine["measured_precision"].map("{:.3f}".format)
                + " on " + machine["n_gold"].astype(str) + " held-out gold labels, model " + machine["model_version"])
    rows = pd.DataFrame({
        "item_id": machine["item_id"], "kind": machine["kind"], "label": machine["label"],
        **{c: machine[c] for c in _BOX}, "geometry_wkb": None, "confidence": machine["measured_precision"],
        "n_annotators": 0, "n_assigned": 0, "method": MACHINE_METHOD, "annotation_ids": "",
    })
    rows = CONSENSUS_LABELS.conform(rows).assign(label_source="machine", auto_accept_evidence=evidence.to_numpy())
    out = pd.concat([people, rows], ignore_index=True)
    return out.astype({"label_source": "string", "auto_accept_evidence": "string"})


def items_for_vendor(prelabels: pd.DataFrame, accepted: pd.DataFrame) -> pd.DataFrame:
    """The pre-labels of items that still go to people: all but the auto-accepted items not
    drawn for the check."""
    released_by_machine = accepted.loc[~accepted["sent_for_check"], "item_id"]
    return prelabels[~prelabels["item_id"].isin(released_by_machine)]
