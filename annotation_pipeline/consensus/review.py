"""Review where it pays: dismiss what only unreliable annotators saw, queue the rest by expected gain.

Every consensus candidate has a default decision the model makes on its own: a scene item its most
probable label, an object cluster below quorum "not released". A review is worth the probability
that the default decision is wrong, because a reviewer turns a wrong decision into a right one:

- scene item: ``1 - confidence`` (the posterior is calibrated; see ``calibration``);
- object cluster below quorum: ``P(real)``, the chance the object exists although too few
  annotators drew it. Each supporter's *precision* (share of their objects that ended up in a
  merged, quorum object) is the chance a box of theirs is real; the cluster is real unless every
  supporter was wrong: ``P(real) = 1 - Π (1 - precision)``.

Clusters that cannot pay are dismissed with a reason, not queued: those drawn only by unreliable
annotators (every supporter's precision below ``unreliable_precision``), and those lying on a
merged object of another class in the same item (the class vote was lost; the object is
released under the majority's class). The rest are ranked by expected gain and the top ones, up
to the partition's budget, are queued. A candidate over budget is deferred: kept in the queue,
not released, so an unreviewed doubt never lowers the accuracy of what ships. Every candidate
not released is a row of the review queue with its status, reason and gain.

A scene label is a candidate as soon as a review is worth a slot (``1 - confidence >=
min_gain``), not only below ``min_confidence``: a label at 0.75 is wrong one time in four, and
shipping it while the budget sits unused lowers the accuracy of the release (on 40 generated days
of the sample world, 17 of the 28 wrong scene labels at or above 0.7 were below 0.95, where the
budget had room for them). Over budget, a label at or above ``min_confidence`` is released rather than deferred
(``releasable``): review is the first use of the budget, shipping the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.boxes import MergeResult, grown_boxes, pair_iou

COORDS = ["x_min", "y_min", "x_max", "y_max"]


@dataclass(frozen=True)
class ReviewPolicy:
    """How much review a partition can afford, and what counts as an unreliable annotator."""

    budget_share: float = 0.15          # at most this share of the partition's candidates queued
    budget_max: int | None = None       # and at most this many (None: no absolute cap)
    min_gain: float = 0.02              # a review that fixes less than this is not worth a slot
    unreliable_precision: float = 0.5   # below this share of objects confirmed: unreliable
    min_confidence: float = 0.7         # a scene label at or above this is released unreviewed
    iou_threshold: float = 0.5          # overlap that makes two objects the same object

    def budget(self, n_candidates: int) -> int:
        share = int(np.floor(self.budget_share * n_candidates + 1e-9))
        return share if self.budget_max is None else min(share, self.budget_max)


def annotator_precision(members: pd.DataFrame) -> pd.Series:
    """Share of each annotator's objects that ended up in a merged (quorum) object."""
    return members.groupby("annotator_id", sort=False)["accepted"].mean().rename("precision")


def p_real(result: MergeResult, precision: pd.Series) -> np.ndarray:
    """P(object is real) per below-quorum cluster of ``result``: 1 - Π (1 - supporter precision)."""
    below = result.below_quorum
    members = result.members
    members = members[~members["accepted"].to_numpy()]
    q = precision.reindex(members["annotator_id"]).fillna(0.0).to_numpy().clip(0.0, 1.0 - 1e-9)
    codes = pd.Index(below["cluster"]).get_indexer(members["cluster"])
    keep = codes >= 0
    log_miss = np.bincount(codes[keep], weights=np.log1p(-q[keep]), minlength=len(below))
    return 1.0 - np.exp(log_miss)


def overlaps_merged_object(below: pd.DataFrame, merged: pd.DataFrame, iou_threshold: float,
                           pointing_noise: float = 0.0) -> np.ndarray:
    """True where a below-quorum cluster overlaps a merged object of another class (bounds IoU).

    ``pointing_noise``: the merge's corner noise sd; both boxes get the slack the merge's own
    matching gave them (``boxes.grown_boxes``), so a small box counts as overlapping exactly when
    the merge would have put it with that object had the classes been the same.
    """
    if not len(below) or not len(merged):
        return np.zeros(len(below), bool)
    left = below[["item_id", "label", *COORDS]].reset_index(drop=True).rename_axis("row").reset_index()
    pairs = left.merge(merged[["item_id", "label", *COORDS]], on="item_id", suffixes=("", "_m"))
    pairs = pairs[pairs["label"] != pairs["label_m"]]
    if not len(pairs):
        return np.zeros(len(below), bool)
    coords = np.concatenate([pairs[COORDS].to_numpy(float),
                             pairs[[c + "_m" for c in COORDS]].to_numpy(float)])
    n = len(pairs)
    iou = pair_iou(grown_boxes(np.ascontiguousarray(coords.T), pointing_noise), np.arange(n),
                   np.arange(n) + n)
    hit = np.zeros(len(below), bool)
    hit[pairs["row"].to_numpy()[iou >= iou_threshold]] = True
    return hit


def triage_objects(result: MergeResult, precision: pd.Series, policy: ReviewPolicy) -> pd.DataFrame:
    """Below-quorum clusters with ``status`` (dismissed or candidate), ``reason`` and ``expected_gain``."""
    below = result.below_quorum.copy()
    probability = p_real(result, precision)
    outvoted = overlaps_merged_object(below, result.merged, policy.iou_threshold,
                                      result.pointing_noise)
    members = result.members[~result.members["accepted"].to_numpy()]
    supporter_q = precision.reindex(members["annotator_id"]).fillna(0.0).to_numpy()
    best_q = pd.Series(supporter_q).groupby(members["cluster"].to_numpy()).max()
    unreliable = best_q.reindex(below["cluster"]).fillna(0.0).to_numpy() < policy.unreliable_precision
    below["reason"] = np.where(outvoted, "outvoted_by_merged_object",
                               np.where(unreliable, "unreliable_annotators_only", "below_quorum"))
    below["status"] = np.where(outvoted | unreliable, "dismissed", "candidate")
    below["expected_gain"] = np.where(outvoted | unreliable, 0.0, probability)
    below["confidence"] = probability
    return below


def allocate(candidates: pd.DataFrame, n_all_candidates: int, policy: ReviewPolicy) -> pd.DataFrame:
    """Mark the highest-gain ``candidate`` rows ``queued`` within the budget; the rest ``over_budget``,
    or ``released`` where the row is ``releasable`` (confident enough to ship unreviewed).

    ``candidates`` holds every row that could be reviewed (``status == "candidate"``) with its
    ``expected_gain``; ties break on item id, so a rerun queues the same rows.
    """
    frame = candidates.copy()
    open_rows = frame["status"].to_numpy() == "candidate"
    budget = policy.budget(n_all_candidates)
    order = frame[open_rows].sort_values(["expected_gain", "item_id"], ascending=[False, True],
                                         kind="stable").index
    worth = frame.loc[order, "expected_gain"].to_numpy() >= policy.min_gain
    chosen = order[worth][:budget]
    frame.loc[open_rows, "status"] = "over_budget"
    frame.loc[chosen, "status"] = "queued"
    if "releasable" in frame.columns:
        ships = (frame["status"].to_numpy() == "over_budget") & frame["releasable"].fillna(
            False).to_numpy(bool)
        frame.loc[ships, "status"] = "released"
        frame.loc[ships, "reason"] = ""
    return frame
