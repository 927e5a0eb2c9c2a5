"""Why answers on hidden gold tasks were wrong: the error taxonomy of a release's quality report.

Every gold object an annotator saw ends in exactly one outcome, judged against the objects
they drew on that item (boxes against boxes, polygons against polygons):

- ``correct``: they drew the same class over it (IoU >= ``match_iou``, 0.5 as in PASCAL VOC);
- ``wrong_class``: they drew something over it (IoU >= ``match_iou``) but of another class;
- ``location_error``: the same class, but placed loosely (``loose_iou`` <= IoU < ``match_iou``);
- ``missed``: nothing of theirs overlaps it enough.

A drawn object that overlaps no gold object by ``loose_iou`` is an ``extra_object``; a scene
choice that differs from the gold scene is a ``wrong_class`` of the scene. The outcomes are
counted per annotator and in total, so a program manager sees whether a vendor misses things,
confuses classes or draws sloppily: three problems with three different fixes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.consensus.boxes import box_iou, polygon_iou

OUTCOMES = ("correct", "wrong_class", "location_error", "missed", "extra_object")
_COORDS = ["x_min", "y_min", "x_max", "y_max"]


def _overlap(pairs: pd.DataFrame) -> np.ndarray:
    iou = np.zeros(len(pairs))
    boxes = (pairs["kind"] == "box").to_numpy()
    if boxes.any():
        iou[boxes] = box_iou(pairs.loc[boxes, _COORDS].to_numpy(float),
                             pairs.loc[boxes, [f"{c}_gold" for c in _COORDS]].to_numpy(float))
    polygons = (pairs["kind"] == "polygon").to_numpy()
    if polygons.any():
        iou[polygons] = polygon_iou(shapely.from_wkb(pairs.loc[polygons, "geometry_wkb"].to_numpy(object)),
                                    shapely.from_wkb(pairs.loc[polygons, "geometry_wkb_gold"].to_numpy(object)))
    return iou


def gold_error_outcomes(answers: pd.DataFrame, gold: pd.DataFrame, *, match_iou: float = 0.5,
                        loose_iou: float = 0.1) -> pd.DataFrame:
    """One row per judged element: annotator_id, item_id, element (scene / object), label, outcome.

    ``answers``: accepted ANNOTATIONS rows; only hidden gold tasks on items of ``gold``
    (GOLD_LABELS) are judged.
    """
    on_gold = answers[answers["is_gold"].fillna(False).to_numpy(bool) & answers["item_id"].isin(gold["item_id"])]
    seen = on_gold[["annotator_id", "item_id"]].drop_duplicates()

    scene_gold = gold.loc[gold["kind"] == "choice", ["item_id", "label"]].drop_duplicates("item_id")
    given = on_gold.loc[on_gold["kind"] == "choice", ["annotator_id", "item_id", "label"]].rename(
        columns={"label": "given"}).drop_duplicates(["annotator_id", "item_id"])
    scene = seen.merge(scene_gold, on="item_id").merge(given, on=["annotator_id", "item_id"], how="left")
    scene["outcome"] = np.where(scene["given"].isna(), "missed",
                                np.where(scene["given"] == scene["label"], "correct", "wrong_class"))
    scene["element"] = "scene"

    geometry = ["item_id", "kind", "label", *_COORDS, "geometry_wkb"]
    gold_objects = gold.loc[gold["kind"] != "choice", geometry].reset_index(drop=True)
    gold_objects["gold_index"] = np.arange(len(gold_objects))
    drawn = on_gold.loc[on_gold["kind"] != "choice", ["annotator_id", "annotation_id", *geometry]]
    pairs = drawn.merge(gold_objects, on=["item_id", "kind"], suffixes=("", "_gold"))
    pairs["iou"] = _overlap(pairs) if len(pairs) else np.zeros(0)
    pairs["same_class"] = pairs["label"] == pairs["label_gold"]

    by_gold = pairs.groupby(["annotator_id", "gold_index"])
    best_same = pairs[pairs["same_class"]].groupby(["annotator_id", "gold_index"])["iou"].max()
    best_any = by_gold["iou"].max()
    judged = seen.merge(gold_objects[["item_id", "label", "gold_index"]], on="item_id")
    key = pd.MultiIndex.from_frame(judged[["annotator_id", "gold_index"]])
    same = np.nan_to_num(key.map(best_same).to_numpy(float)) if len(judged) else np.zeros(0)
    anything = np.nan_to_num(key.map(best_any).to_numpy(float)) if len(judged) else np.zeros(0)
    judged["outcome"] = np.select(
        [same >= match_iou, anything >= match_iou, same >= loose_iou],
        ["correct", "wrong_class", "location_error"], default="missed")
    judged["element"] = "object"

    explained = pairs[pairs["iou"] >= loose_iou]["annotation_id"].unique()
    extra = drawn[~drawn["annotation_id"].isin(explained)].assign(outcome="extra_object", element="object")

    columns = ["annotator_id", "item_id", "element", "label", "outcome"]
    out = pd.concat([scene[columns], judged[columns], extra[columns]], ignore_index=True)
    return out.astype({c: "string" for c in columns})


def error_taxonomy(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Counts of each outcome per annotator, plus an ``all`` row; columns in OUTCOMES order."""
    if outcomes.empty:
        return pd.DataFrame(columns=list(OUTCOMES), dtype=int)
    table = outcomes.value_counts(["annotator_id", "outcome"]).unstack(fill_value=0)
    table = table.reindex(columns=list(OUTCOMES), fill_value=0)
    table.loc["all"] = table.sum()
    return table.astype(int)
