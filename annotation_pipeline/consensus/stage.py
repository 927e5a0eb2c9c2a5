"""The consensus stage entry point the Dagster asset calls.

Scene choices are aggregated (gold tasks calibrate annotators but never appear in the release),
boxes and polygons are merged by IoU (see ``boxes``), agreement is measured (see ``agreement``)
and everything that is not confident enough goes to the review queue with its evidence. Nothing
is overwritten: a queued item keeps all of its answers in the queue and is *not* in ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from annotation_pipeline.consensus import agreement as agreement_mod
from annotation_pipeline.consensus.auto import aggregate_labels
from annotation_pipeline.consensus.box_reliability import annotator_geometry_reliability
from annotation_pipeline.consensus.boxes import merge_boxes_by_iou, merge_polygons_by_iou
from annotation_pipeline.consensus.encoding import ANSWER_COLUMNS
from annotation_pipeline.consensus.provenance import join_strings_by_group
from annotation_pipeline.consensus.review import ReviewPolicy, allocate, annotator_precision, triage_objects
from annotation_pipeline.contracts import AGREEMENT_METRICS, CONSENSUS_LABELS, REVIEW_QUEUE


@dataclass
class ConsensusResult:
    labels: pd.DataFrame                 # contracts.CONSENSUS_LABELS
    review_queue: pd.DataFrame           # contracts.REVIEW_QUEUE
    agreement: pd.DataFrame              # contracts.AGREEMENT_METRICS
    annotator_reliability: pd.DataFrame  # annotator_id, scene_accuracy, gold_accuracy, n_gold, geometry_weight
    counts: dict[str, int]               # reconciliation figures for asset metadata
    method: str                          # aggregator actually used for scene choices
    scene_model: object = None           # the fitted scene aggregator (auto: ``choice_`` holds its evidence)
    pointing_noise: dict[str, float] = field(default_factory=dict)  # box merge: corner noise sd (px) matched with


def _join_ids(values: pd.Series, groups: pd.Series) -> pd.Series:
    """Space-separated annotation ids per group (provenance strings), vectorized."""
    codes, uniques = pd.factorize(groups)
    return pd.Series(join_strings_by_group(values, codes, len(uniques)), index=uniques)


def run_consensus(annotations: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame, *,
                  method: str = "auto", iou_threshold: float = 0.5,
                  min_confidence: float = 0.7,
                  policy: ReviewPolicy | None = None) -> ConsensusResult:
    """Scene labels, merged objects, agreement and the review queue for returned annotations.

    - Scene (kind ``choice``): aggregated with ``method`` over all tasks; gold tasks calibrate
      annotators (their known answers clamp the posterior) and are excluded from ``labels``.
      Items whose label is wrong with probability ``policy.min_gain`` or more are review
      candidates (reason ``low_confidence``); over budget, those at or above ``min_confidence``
      are released, the rest deferred.
    - Objects (kinds ``box`` / ``polygon``): merged per item and class by IoU with at most one
      object per annotator per cluster; quorum = a majority of the annotators who saw the item
      (anyone who answered the item's task). Fused geometry is weighted by each annotator's
      geometry reliability (agreement with a first, unweighted consensus). Clusters below
      quorum are dismissed or become review candidates (see ``review``). Gold items excluded.
    - Review: candidates are ranked by expected label-accuracy gain and queued up to the
      partition's budget (``policy``), a hard cap: ``floor(budget_share x consensus candidates)``,
      the candidates being the scene items, merged objects and below-quorum clusters not
      dismissed automatically (``counts["consensus_candidates"]``). Over budget a candidate is
      deferred (kept in the queue, not released) or, for a confident scene label, released; the review queue holds every candidate not released,
      with ``status`` queued / deferred / dismissed, its reason and expected gain.
    """
    policy = policy or ReviewPolicy(min_confidence=min_confidence, iou_threshold=iou_threshold)
    annotations = annotations.reset_index(drop=True)
    gold_items = set(tasks.loc[tasks["is_gold"].astype(bool), "item_id"]) | set(
        annotations.loc[annotations["is_gold"].astype(bool), "item_id"])
    is_gold_row = annotations["item_id"].isin(gold_items).to_numpy()
    kind = annotations["kind"].to_numpy()
    # who saw which item: every annotator who returned anything for it
    seen = annotations[["item_id", "annotator_id"]].drop_duplicates()
    n_assigned = seen.groupby("item_id", sort=False).size().rename("n_assigned")

    choices = annotations[kind == "choice"]
    gold_choice = gold.loc[gold["kind"] == "choice", ["item_id", "label"]] if len(gold) else None
    scene, scene_model, chosen = _scene_candidates(choices, gold_choice, gold_items, n_assigned,
                                                   method, policy)
    objects = annotations[((kind == "box") | (kind == "polygon")) & ~is_gold_row]
    objects = objects.assign(n_assigned=n_assigned.reindex(objects["item_id"]).to_numpy())
    merged, below, members, weights, noise = _object_candidates(objects, policy)

    # the budget's denominator: what the day's consensus decides on, i.e. its scene items, merged
    # objects and below-quorum clusters still open. A cluster dismissed automatically (drawn only by
    # unreliable annotators, outvoted by a merged object) is decided without a reviewer; counting it
    # let a spammer's junk boxes raise the budget (2026-12-06: 72 dismissed clusters made 15 % of 221
    # = 33 slots, and 29 of the 149 candidates left, 19 %, were queued)
    n_dismissed = int((below["status"] == "dismissed").sum()) if len(below) else 0
    n_candidates = len(scene) + len(merged) + len(below) - n_dismissed
    decided = allocate(pd.concat([scene, below], ignore_index=True), n_candidates, policy)
    is_scene = (decided["kind"] == "choice").to_numpy()
    status = decided["status"].to_numpy()
    released_scene = decided[is_scene & (status == "released")]
    queue = decided[status != "released"]
    queue = queue.assign(status=queue["status"].replace({"over_budget": "deferred"}))
    labels = CONSENSUS_LABELS.conform(pd.concat(
        [CONSENSUS_LABELS.empty(), CONSENSUS_LABELS.conform(released_scene)]
        + ([CONSENSUS_LABELS.conform(merged)] if len(merged) else []), ignore_index=True))
    review = REVIEW_QUEUE.conform(pd.concat([REVIEW_QUEUE.empty(), queue[list(REVIEW_QUEUE.columns)]],
                                            ignore_index=True))

    # ---- agreement and reliability
    member_frame = members if len(members) else None
    consensus_scene = (scene_model.labels_.rename("label").reset_index()
                       if scene_model is not None else None)
    metrics = agreement_mod.agreement_table(
        choices[["item_id", "annotator_id", "label"]].assign(
            batch_id=choices["batch_id"].to_numpy()) if len(choices) else None,
        consensus=consensus_scene, geometry_members=member_frame,
        gold=gold_choice)
    reliability = _annotator_reliability(annotations, scene_model, gold_choice, weights)
    review_status = review["status"].to_numpy()
    counts = {
        "annotations_received": int(len(annotations)),
        "scene_answers": int(len(choices)),
        "object_annotations": int(len(objects)),
        "gold_answers": int(is_gold_row.sum()),
        "scene_items_labeled": int(len(released_scene)),
        "scene_items_queued": int(((review["kind"] == "choice").to_numpy()).sum()),
        "objects_merged": int(len(merged)),
        "clusters_below_quorum": int(len(below)),
        "consensus_candidates": int(n_candidates),
        "candidates_scene_items": int(len(scene)),
        "candidates_merged_objects": int(len(merged)),
        "candidates_open_clusters": int(len(below) - n_dismissed),
        "clusters_dismissed_automatically": n_dismissed,
        "review_budget": int(policy.budget(n_candidates)),
        "queued_for_review": int((review_status == "queued").sum()),
        "deferred_over_budget": int((review_status == "deferred").sum()),
        "dismissed": int((review_status == "dismissed").sum()),
    }
    return ConsensusResult(labels=labels, review_queue=review,
                           agreement=AGREEMENT_METRICS.conform(metrics),
                           annotator_reliability=reliability, counts=counts, method=chosen,
                           scene_model=scene_model, pointing_noise=noise)


def _scene_candidates(choices: pd.DataFrame, gold_choice, gold_items: set, n_assigned: pd.Series,
                      method: str, policy: ReviewPolicy):
    """Non-gold scene items with status ``released`` (confident) or ``candidate`` and their gain."""
    columns = [*CONSENSUS_LABELS.columns, "reason", "status", "expected_gain"]
    if not len(choices):
        return pd.DataFrame(columns=columns), None, "none"
    result = aggregate_labels(choices[list(ANSWER_COLUMNS)], method, gold_choice)
    chosen, model = result.attrs["method"], result.attrs["model"]
    ids = _join_ids(choices["annotation_id"], choices["item_id"])
    result["annotation_ids"] = ids.reindex(result["item_id"]).to_numpy()
    result["n_assigned"] = n_assigned.reindex(result["item_id"]).to_numpy()
    # n_annotators = annotators who voted for the released label
    support = choices.groupby(["item_id", "label"], sort=False)["annotator_id"].nunique()
    keys = pd.MultiIndex.from_arrays([result["item_id"], result["label"]])
    result["n_annotators"] = support.reindex(keys).fillna(0).to_numpy()
    result = result[~result["item_id"].isin(gold_items)]
    confidence = result["confidence"].to_numpy()
    confident = confidence >= policy.min_confidence
    # a label worth a review is a candidate even when confident enough to ship unreviewed: it is
    # released only if the budget has no room for it (see ``review.allocate``)
    worth_review = (1.0 - confidence >= policy.min_gain) | ~confident
    scene = result.assign(
        kind="choice", x_min=np.nan, y_min=np.nan, x_max=np.nan, y_max=np.nan,
        geometry_wkb=None, method=chosen, reason=np.where(worth_review, "low_confidence", ""),
        status=np.where(worth_review, "candidate", "released"),
        expected_gain=1.0 - confidence, releasable=confident)
    return scene[[*columns, "releasable"]], model, chosen


def _object_candidates(objects: pd.DataFrame, policy: ReviewPolicy):
    """Merged objects, triaged below-quorum clusters, members and geometry weights per annotator."""
    merged_frames, below_frames, members = [], [], []
    weights = None
    noise: dict[str, float] = {}
    for geometry_kind, merge in (("box", merge_boxes_by_iou), ("polygon", merge_polygons_by_iou)):
        subset = objects[objects["kind"] == geometry_kind]
        if not len(subset):
            continue
        first = merge(subset, iou_threshold=policy.iou_threshold)
        weights_kind = annotator_geometry_reliability(first)
        weights = weights_kind if weights is None else pd.concat([weights, weights_kind]).groupby(
            level=0).mean()
        if geometry_kind == "box":
            # the weighted pass matches with the noise the first one measured: the same boxes, the
            # same slack (re-estimating would cost a pass and could move the clusters by a hair)
            merged = merge(subset, iou_threshold=policy.iou_threshold,
                           annotator_weights=weights_kind, pointing_noise=first.pointing_noise)
            noise["box"] = float(merged.pointing_noise)
        else:  # polygons are matched by plain IoU
            merged = merge(subset, iou_threshold=policy.iou_threshold, annotator_weights=weights_kind)
        below = triage_objects(merged, annotator_precision(first.members), policy)
        merged_frames.append(merged.merged.assign(kind=geometry_kind, method="iou_cluster"))
        below_frames.append(below.assign(kind=geometry_kind, method="iou_cluster"))
        members.append(merged.members.assign(kind=geometry_kind))
    for frame in merged_frames + below_frames:
        if "geometry_wkb" not in frame.columns:
            frame["geometry_wkb"] = None
    merged = pd.concat(merged_frames, ignore_index=True) if merged_frames else pd.DataFrame()
    below = pd.concat(below_frames, ignore_index=True) if below_frames else pd.DataFrame(
        columns=[*CONSENSUS_LABELS.columns, "reason", "status", "expected_gain"])
    return (merged, below, pd.concat(members, ignore_index=True) if members else pd.DataFrame(),
            weights, noise)


def _annotator_reliability(annotations: pd.DataFrame, scene_model, gold_choice,
                           geometry_weights: pd.Series | None) -> pd.DataFrame:
    annotators = pd.Index(annotations["annotator_id"].drop_duplicates(), name="annotator_id")
    frame = pd.DataFrame(index=annotators)
    frame["scene_accuracy"] = (scene_model.skills_.reindex(annotators).to_numpy()
                               if scene_model is not None and hasattr(scene_model, "skills_")
                               else np.nan)
    choices = annotations[annotations["kind"] == "choice"]
    if gold_choice is not None and len(gold_choice) and len(choices):
        joined = choices.merge(gold_choice.rename(columns={"label": "gold_label"}), on="item_id")
        hit = (joined["label"] == joined["gold_label"]).groupby(joined["annotator_id"])
        frame["gold_accuracy"] = hit.mean().reindex(annotators).to_numpy()
        frame["n_gold"] = hit.size().reindex(annotators).fillna(0).astype("int64").to_numpy()
    else:
        frame["gold_accuracy"] = np.nan
        frame["n_gold"] = 0
    frame["geometry_weight"] = (geometry_weights.reindex(annotators).to_numpy()
                                if geometry_weights is not None else np.nan)
    return frame.reset_index()
