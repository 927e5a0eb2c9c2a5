"""Gold answers judged: did the annotator find what the gold set holds?

The vendor cannot tell gold tasks from the others; we know their answers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.consensus.boxes import box_iou, polygon_iou


def _pairwise_iou(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """IoU of row-aligned pairs: boxes from their edges, polygons (both valid) through GEOS."""
    edges = ["x_min", "y_min", "x_max", "y_max"]
    iou = box_iou(a[edges].to_numpy(dtype=float, na_value=np.nan), b[edges].to_numpy(dtype=float, na_value=np.nan))
    polys = (a["geometry_wkb"].notna() & b["geometry_wkb"].notna()).to_numpy()
    if polys.any():
        ga = shapely.from_wkb(a["geometry_wkb"].to_numpy(dtype=object)[polys], on_invalid="ignore")
        gb = shapely.from_wkb(b["geometry_wkb"].to_numpy(dtype=object)[polys], on_invalid="ignore")
        usable = shapely.is_valid(ga) & shapely.is_valid(gb)
        p_iou = np.zeros(len(ga))
        p_iou[usable] = polygon_iou(ga[usable], gb[usable])
        iou[polys] = p_iou
    return iou


def gold_answer_outcomes(accepted: pd.DataFrame, gold: pd.DataFrame, *, iou_threshold: float = 0.5
                         ) -> pd.DataFrame:
    """One row per judged element of an annotator's answers on gold tasks.

    element: ``scene`` (their scene choice vs the gold scene), ``gold_object`` (a gold object:
    found when they drew the same class with IoU >= threshold), ``extra_object`` (an object they
    drew that matches no gold object: counted wrong, or drawing everywhere would pay).
    Columns: annotator_id, item_id, element, label, correct, iou.
    """
    cols = ["annotator_id", "item_id", "element", "label", "correct", "iou"]
    on_gold = accepted[accepted["is_gold"].fillna(False).to_numpy(dtype=bool)]
    gold_items = set(gold["item_id"])
    on_gold = on_gold[on_gold["item_id"].isin(gold_items)]
    if on_gold.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ["string", "string", "string", "string", "bool", "float64"])})
    answered = on_gold[["annotator_id", "item_id"]].drop_duplicates()

    scene_gold = gold[gold["kind"] == "choice"].drop_duplicates("item_id")[["item_id", "label"]]
    scene = answered.merge(scene_gold, on="item_id").merge(
        on_gold.loc[on_gold["kind"] == "choice", ["annotator_id", "item_id", "label"]].rename(columns={"label": "given"}),
        on=["annotator_id", "item_id"], how="left")
    scene = scene.assign(element="scene", correct=(scene["label"] == scene["given"]).fillna(False).to_numpy(dtype=bool),
                         iou=np.nan)

    geo = ["item_id", "kind", "label", "x_min", "y_min", "x_max", "y_max", "geometry_wkb"]
    gold_obj = gold.loc[gold["kind"] != "choice", geo].reset_index(drop=True).rename_axis("gold_idx").reset_index()
    drawn = on_gold.loc[on_gold["kind"] != "choice", ["annotator_id", "annotation_id"] + geo]
    pairs = drawn.merge(gold_obj, on=["item_id", "kind", "label"], suffixes=("", "_gold"))
    iou = _pairwise_iou(pairs[geo[3:]], pairs[[f"{c}_gold" for c in geo[3:]]].set_axis(geo[3:], axis=1)) \
        if len(pairs) else np.array([])
    pairs = pairs.assign(iou=iou)
    best_for_gold = pairs.groupby(["annotator_id", "gold_idx"], sort=False)["iou"].max()
    gold_found = answered.merge(gold_obj[["gold_idx", "item_id", "label"]], on="item_id")
    gold_found["iou"] = pd.MultiIndex.from_frame(gold_found[["annotator_id", "gold_idx"]]).map(best_for_gold) \
        if len(gold_found) else []
    gold_found = gold_found.assign(element="gold_object", iou=gold_found["iou"].astype(float).fillna(0.0))
    gold_found["correct"] = gold_found["iou"] >= iou_threshold
    best_for_drawn = pairs.groupby("annotation_id", sort=False)["iou"].max()
    extra = drawn.assign(iou=drawn["annotation_id"].map(best_for_drawn).astype(float).fillna(0.0))
    extra = extra[extra["iou"] < iou_threshold].assign(element="extra_object", correct=False)
    out = pd.concat([scene[cols], gold_found[cols], extra[cols]], ignore_index=True)
    return out.astype({"annotator_id": "string", "item_id": "string", "element": "string",
                       "label": "string", "correct": bool, "iou": float})
