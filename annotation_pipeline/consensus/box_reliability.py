"""Annotator reliability from geometry, and the reliability-weighted box merge built on it."""

from __future__ import annotations

import pandas as pd

from annotation_pipeline.consensus.boxes import MergeResult, merge_boxes_by_iou


def annotator_geometry_reliability(result: MergeResult) -> pd.Series:
    """Per annotator: F1 of their objects against the merged (quorum) objects × mean IoU.

    Precision = share of the annotator's objects that ended up in a merged object; recall =
    share of merged objects, on items the annotator drew on, that contain one of theirs. This
    is the weight of a second, reliability-weighted merge.
    """
    members = result.members
    if not len(members):
        return pd.Series(dtype="float64", name="geometry_weight")
    accepted = members["accepted"].to_numpy()
    by_annotator = members.groupby("annotator_id", sort=False)
    n_objects = by_annotator.size()
    n_hits = by_annotator["accepted"].sum()
    mean_iou = members[accepted].groupby("annotator_id", sort=False)["iou_to_fused"].mean()
    merged_items = result.merged.groupby("item_id", sort=False).size()
    items_of = members[["annotator_id", "item_id"]].drop_duplicates()
    possible = items_of.assign(n=merged_items.reindex(items_of["item_id"]).fillna(0).to_numpy())
    n_possible = possible.groupby("annotator_id", sort=False)["n"].sum()
    precision = n_hits / n_objects
    recall = (n_hits / n_possible.reindex(n_hits.index)).clip(upper=1.0).fillna(0.0)
    f1 = (2 * precision * recall / (precision + recall)).fillna(0.0)
    weight = f1 * mean_iou.reindex(f1.index).fillna(0.0)
    return weight.rename("geometry_weight")


def merge_boxes_reliability_weighted(boxes: pd.DataFrame, iou_threshold: float = 0.5,
                                     quorum: int | None = None,
                                     assignments: pd.DataFrame | None = None,
                                     pointing_noise: float | None = None
                                     ) -> tuple[MergeResult, pd.Series]:
    """Clusters fused twice: unweighted, which estimates each annotator's geometry reliability
    (``annotator_geometry_reliability``), then weighted by it. A spammer's box that lands in a
    cluster by chance then barely moves the fused box. Returns the result and the weights.
    ``pointing_noise``: as in ``merge_boxes_by_iou`` (default: estimated from the boxes)."""
    estimated: list[pd.Series] = []

    def reweight(first: MergeResult) -> pd.Series:
        estimated.append(annotator_geometry_reliability(first))
        return estimated[0]

    result = merge_boxes_by_iou(boxes, iou_threshold, quorum, assignments=assignments,
                                reweight=reweight, pointing_noise=pointing_noise)
    return result, estimated[0]
