"""What changed between two releases: labels added, changed (old and new value) and removed.

"Did the evaluation run before or after the label fixes?" is answered by comparing the two
releases' labels, by item and class:

- a scene label (``kind == "choice"``) is the item's one answer: it is added, removed, or
  changed when its class differs;
- objects (boxes, polygons) have no identity across releases, so they are matched within an
  item and kind by overlap (IoU at least ``iou_threshold``, the usual object-matching
  threshold), each object at most once, best overlaps first. A matched pair with another class
  is a change; an unmatched object is added or removed. A matched pair of the same class is
  unchanged, even if it moved a little.

The matching is vectorized: candidate pairs come from one merge on ``(item_id, kind)``, and
the greedy one-to-one assignment takes, in rounds, every pair that is the best remaining pair
of both its objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.consensus.boxes import box_iou, polygon_iou

COORDS = ["x_min", "y_min", "x_max", "y_max"]
CHANGE_COLUMNS = ["change", "item_id", "kind", "old_label", "new_label", "iou"]


@dataclass(frozen=True)
class ReleaseDiff:
    changes: pd.DataFrame        # CHANGE_COLUMNS, one row per added / changed / removed label
    n_unchanged: int

    def by_class(self) -> pd.DataFrame:
        """Counts of added / changed / removed per class (a change counts for its old and new class)."""
        c = self.changes
        rows = pd.concat([
            pd.DataFrame({"label": c["new_label"], "change": c["change"]})[c["change"] == "added"],
            pd.DataFrame({"label": c["old_label"], "change": c["change"]})[c["change"] == "removed"],
            pd.DataFrame({"label": c["old_label"], "change": "changed_from"})[c["change"] == "changed"],
            pd.DataFrame({"label": c["new_label"], "change": "changed_to"})[c["change"] == "changed"],
        ], ignore_index=True)
        table = rows.value_counts(["label", "change"]).unstack(fill_value=0) if len(rows) else pd.DataFrame()
        for column in ("added", "removed", "changed_from", "changed_to"):
            if column not in table:
                table[column] = 0
        return table[["added", "removed", "changed_from", "changed_to"]].sort_index().astype(int)

    def summary(self) -> dict:
        counts = self.changes["change"].value_counts()
        return {"added": int(counts.get("added", 0)), "changed": int(counts.get("changed", 0)),
                "removed": int(counts.get("removed", 0)), "unchanged": self.n_unchanged,
                "items_touched": int(self.changes["item_id"].nunique())}


def diff_releases(old: pd.DataFrame, new: pd.DataFrame, iou_threshold: float = 0.5) -> ReleaseDiff:
    """Compare two releases' labels (CONSENSUS_LABELS rows, as ``labels.parquet`` holds them)."""
    old, new = old.reset_index(drop=True), new.reset_index(drop=True)
    scenes, unchanged_scenes = _diff_scenes(old[old["kind"] == "choice"], new[new["kind"] == "choice"])
    objects, unchanged_objects = [], 0
    for kind in ("box", "polygon"):
        found, same = _diff_objects(old[old["kind"] == kind].reset_index(drop=True),
                                    new[new["kind"] == kind].reset_index(drop=True), kind, iou_threshold)
        objects.append(found)
        unchanged_objects += same
    changes = pd.concat([scenes, *objects], ignore_index=True)
    order = {"removed": 0, "changed": 1, "added": 2}
    changes = changes.sort_values(["item_id", "kind", "change"], key=lambda s: s.map(order) if s.name == "change"
                                  else s, kind="stable").reset_index(drop=True)
    return ReleaseDiff(changes[CHANGE_COLUMNS], unchanged_scenes + unchanged_objects)


def _frame(change: str, item_id, kind: str, old_label, new_label, iou) -> pd.DataFrame:
    """Rows of one kind of change; ``None`` / NaN stand for a side that has no value."""
    n = len(item_id)

    def column(values, dtype: str) -> pd.Series:
        if values is None or np.isscalar(values):
            return pd.Series(np.full(n, np.nan if values is None else values, dtype=object), dtype=dtype)
        return pd.Series(np.asarray(values, dtype=object), dtype=dtype)

    return pd.DataFrame({"change": np.full(n, change, dtype=object), "item_id": column(item_id, "string"),
                         "kind": np.full(n, kind, dtype=object), "old_label": column(old_label, "string"),
                         "new_label": column(new_label, "string"), "iou": column(iou, "float64")})


def _diff_scenes(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    both = old[["item_id", "label"]].merge(new[["item_id", "label"]], on="item_id", how="outer",
                                           suffixes=("_old", "_new"), indicator=True)
    removed = both[both["_merge"] == "left_only"]
    added = both[both["_merge"] == "right_only"]
    matched = both[both["_merge"] == "both"]
    changed = matched[matched["label_old"] != matched["label_new"]]
    frames = [
        _frame("removed", removed["item_id"], "choice", removed["label_old"], None, np.nan),
        _frame("added", added["item_id"], "choice", None, added["label_new"], np.nan),
        _frame("changed", changed["item_id"], "choice", changed["label_old"], changed["label_new"], np.nan),
    ]
    return pd.concat(frames, ignore_index=True), len(matched) - len(changed)


def _pair_overlap(old: pd.DataFrame, new: pd.DataFrame, i: np.ndarray, j: np.ndarray, kind: str) -> np.ndarray:
    if kind == "box":
        return box_iou(old[COORDS].to_numpy(np.float64)[i], new[COORDS].to_numpy(np.float64)[j])
    return polygon_iou(shapely.from_wkb(old["geometry_wkb"].to_numpy(object)[i]),
                       shapely.from_wkb(new["geometry_wkb"].to_numpy(object)[j]))


def _greedy_one_to_one(i: np.ndarray, j: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best overlaps first, each object once: rounds of pairs that are both objects' best left."""
    order = np.argsort(-score, kind="stable")
    i, j, score = i[order], j[order], score[order]
    keep_i, keep_j, keep_s = [], [], []
    while len(i):  # each round assigns at least the single best pair: few rounds in practice
        best_of_i = np.zeros(len(i), bool)
        best_of_i[np.unique(i, return_index=True)[1]] = True
        best_of_j = np.zeros(len(j), bool)
        best_of_j[np.unique(j, return_index=True)[1]] = True
        take = best_of_i & best_of_j
        keep_i.append(i[take])
        keep_j.append(j[take])
        keep_s.append(score[take])
        rest = ~np.isin(i, i[take]) & ~np.isin(j, j[take])
        i, j, score = i[rest], j[rest], score[rest]
    if not keep_i:
        return np.empty(0, int), np.empty(0, int), np.empty(0)
    return np.concatenate(keep_i), np.concatenate(keep_j), np.concatenate(keep_s)


def _diff_objects(old: pd.DataFrame, new: pd.DataFrame, kind: str, iou_threshold: float
                  ) -> tuple[pd.DataFrame, int]:
    pairs = (pd.DataFrame({"item_id": old["item_id"], "i": np.arange(len(old))})
             .merge(pd.DataFrame({"item_id": new["item_id"], "j": np.arange(len(new))}), on="item_id"))
    i, j = pairs["i"].to_numpy(int), pairs["j"].to_numpy(int)
    overlap = _pair_overlap(old, new, i, j, kind) if len(pairs) else np.empty(0)
    close = overlap >= iou_threshold
    mi, mj, ms = _greedy_one_to_one(i[close], j[close], overlap[close])
    old_label, new_label = old["label"].to_numpy(object), new["label"].to_numpy(object)
    relabeled = old_label[mi] != new_label[mj]
    removed = np.setdiff1d(np.arange(len(old)), mi)
    added = np.setdiff1d(np.arange(len(new)), mj)
    frames = [
        _frame("removed", old["item_id"].to_numpy(object)[removed], kind, old_label[removed], None, np.nan),
        _frame("added", new["item_id"].to_numpy(object)[added], kind, None, new_label[added], np.nan),
        _frame("changed", old["item_id"].to_numpy(object)[mi[relabeled]], kind, old_label[mi[relabeled]],
               new_label[mj[relabeled]], ms[relabeled]),
    ]
    return pd.concat(frames, ignore_index=True), int((~relabeled).sum())
