"""Merge several annotators' boxes and polygons into consensus objects by IoU, explainably.

Every object goes through the same vectorized steps, over all items at once:

1. **Candidate pairs**: objects are grouped by (item, class); all pairs inside a group are
   enumerated with ``np.repeat`` arithmetic (no per-group loop) and pairs of the same annotator
   are dropped up front, which is what guarantees *at most one object per annotator per cluster*
   (weighted boxes fusion can merge two boxes of the same annotator; this cannot).
   **Slack for small boxes**: annotators place corners to within a few pixels whatever the
   object's size, so two honest boxes of a 6 px object often overlap at IoU < 0.5. The noise
   sd is measured on the boxes (``estimate_pointing_noise``) and, for the IoU test only, each
   box is grown by up to 3 sd, fading out on boxes wider than ~6 sd (``grown_boxes``): small
   objects match, large crowded neighbours are judged by plain IoU as before.
2. **Pivot clustering**: in rounds, every (item, class) group picks as pivot its unclustered
   object with the largest summed IoU to the other unclustered objects (the most agreed-upon
   one); each other annotator contributes its best-IoU unclustered object at or above the
   threshold. Rounds loop over *clusters per group* (a handful), never over objects.
3. **Absorption** (boxes): a box left below quorum that overlaps the *fused* box of a quorum
   cluster of its (item, class) at the threshold, and whose annotator is not in it yet, joins it
   (``absorb_into_quorum``): under heavy jitter a box can miss the pivot yet match the mean.
4. **Fusion**: a cluster reaching the quorum (default: a majority of the annotators who saw the
   item) is fused, weighted by annotator reliability; the rest go to ``below_quorum`` with their
   evidence. Nothing is dropped: ``members`` maps every input object to its cluster.

Boxes are fused as the weighted mean of their corners (``box_reliability`` estimates the weights
from a first, unweighted fusion: ``merge_boxes_reliability_weighted``, what ``merge-boxes`` runs).
Polygons are fused as the cluster's weighted *medoid* (the member with the highest reliability ×
summed IoU to the other members): averaging vertices is undefined for polygons with different
vertex counts and a union/intersection drifts with the number of members, while the medoid is
always a valid polygon that one annotator actually drew, so the merge stays explainable.

Confidence of a merged object = weighted support × weighted agreement, where support is the
members' weight over the expected weight of everyone who saw the item, and agreement is the
members' mean IoU to the fused geometry. Both are in [0, 1]; 5/5 annotators with tight boxes
score near 1, 3/5 with loose boxes score well below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from annotation_pipeline.consensus.provenance import as_arrow_strings, join_strings_by_group

BOX_COLUMNS = ("item_id", "annotator_id", "label", "x_min", "y_min", "x_max", "y_max")
POLYGON_COLUMNS = ("item_id", "annotator_id", "label", "geometry_wkb")
COORDS = ("x_min", "y_min", "x_max", "y_max")


class GeometryError(ValueError):
    """The objects frame cannot be merged; the message names column, rows and expectation."""


@dataclass
class MergeResult:
    merged: pd.DataFrame        # quorum reached: fused geometry + confidence + provenance
    below_quorum: pd.DataFrame  # clusters short of quorum, with their best geometry
    members: pd.DataFrame       # one row per input object: cluster, accepted, iou_to_fused
    pointing_noise: float = 0.0  # boxes: corner noise sd the matching allowed for (its units)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "objects_received": int(len(self.members)),
            "objects_in_merged": int(self.members["accepted"].sum()),
            "objects_below_quorum": int((~self.members["accepted"]).sum()),
            "merged_objects": int(len(self.merged)),
            "clusters_below_quorum": int(len(self.below_quorum)),
        }


# --------------------------------------------------------------------------------------------
# shared vectorized building blocks (``join_strings_by_group`` lives in ``provenance``)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + diff: faster than np.unique's hashing for int64 here)."""
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def cluster_codes(cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pivot row of each cluster, cluster code of each row) for pivot-labelled clusters, O(n)."""
    is_pivot = np.zeros(len(cluster), bool)
    is_pivot[cluster] = True
    return np.flatnonzero(is_pivot), (np.cumsum(is_pivot) - 1)[cluster]


def candidate_pairs(group: np.ndarray, annotator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, in the same group and from different annotators.

    ``group`` must be sorted. Pairs are generated with repeat/cumsum arithmetic: row i pairs with
    rows i+1 .. end_of_its_group-1.
    """
    n = len(group)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    boundaries = np.flatnonzero(np.diff(group)) + 1
    ends = np.r_[boundaries, n]
    group_index = np.r_[0, np.cumsum(np.diff(group) != 0)]
    end_of_row = ends[group_index]
    n_partners = end_of_row - np.arange(n) - 1
    total = int(n_partners.sum())
    src = np.repeat(np.arange(n), n_partners)
    first_of_src = np.repeat(np.cumsum(n_partners) - n_partners, n_partners)
    dst = src + 1 + (np.arange(total) - first_of_src)
    different = annotator[src] != annotator[dst]
    return src[different], dst[different]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (n, 4) arrays of x_min, y_min, x_max, y_max."""
    n = len(a)
    both = np.concatenate([np.asarray(a, np.float64), np.asarray(b, np.float64)])
    idx = np.arange(n)
    return pair_iou(np.ascontiguousarray(both.T), idx, idx + n)


def pair_iou(coords: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of boxes i[k] and j[k]; ``coords`` is (4, n), coordinate-major so every gather and
    every arithmetic step runs over contiguous memory (3-4x faster than (n, 4) column views)."""
    x0, y0, x1, y1 = coords
    iw = np.minimum(x1[i], x1[j])
    iw -= np.maximum(x0[i], x0[j])
    np.clip(iw, 0.0, None, out=iw)
    ih = np.minimum(y1[i], y1[j])
    ih -= np.maximum(y0[i], y0[j])
    np.clip(ih, 0.0, None, out=ih)
    inter = iw * ih
    area = (x1 - x0) * (y1 - y0)
    union = area[i] + area[j] - inter
    positive = union > 0
    return np.divide(inter, union, out=np.zeros_like(inter), where=positive)


# Each box is grown by up to this many noise sd's per side before the IoU test; the slack fades
# as (SLACK_FADE_SIZE sd / box's short side)^2 on larger boxes, which plain IoU already matches
# and whose crowded neighbours it must keep apart. Two boxes of one object drawn with corner
# noise sd s (simulated, results_consensus.md), share matching at IoU 0.5 with slack / plain:
# object 3 s wide 0.88 / 0.07, 5 s 0.96 / 0.32, 8 s 0.99 / 0.77, 10 s 1.00 / 0.92; a same-class
# neighbour offset by 0.55-0.8 of its width: 0.05 / 0.00 at 8 s, 0.00 from 13 s.
SLACK_PER_NOISE_SD = 3.0
SLACK_FADE_SIZE = 6.0


def grown_boxes(coords: np.ndarray, pointing_noise: float) -> np.ndarray:
    """(4, n) boxes grown on every side by the slack their size needs (see the constants)."""
    if pointing_noise <= 0:
        return coords
    short_side = np.minimum(coords[2] - coords[0], coords[3] - coords[1])
    np.maximum(short_side, 1e-12, out=short_side)
    fade = np.divide(SLACK_FADE_SIZE * pointing_noise, short_side, out=short_side)
    np.square(fade, out=fade)
    slack = np.minimum(fade, 1.0, out=fade)
    slack *= SLACK_PER_NOISE_SD * pointing_noise
    grown = coords.copy()
    grown[:2] -= slack
    grown[2:] += slack
    return grown


ESTIMATE_PAIRS = 50_000


def estimate_pointing_noise(coords: np.ndarray, group: np.ndarray, annotator: np.ndarray,
                            pair_i: np.ndarray, pair_j: np.ndarray, threshold: float,
                            rounds: int = 3) -> float:
    """Robust sd of the annotators' noise on one corner coordinate, in the boxes' own units.

    Annotators place corners to within a few pixels whatever the object's size, so on a small
    object that noise alone pulls two boxes of it below the IoU threshold. It is measured on the
    boxes themselves: pairs that match give corner differences of sd sqrt(2) s; per box and other
    annotator only its best match counts (a crowded neighbour is not the same object); s =
    1.4826 median|difference| / sqrt(2) (outliers barely move a median), over the pairs of the
    smaller half of the boxes: the slack is for small boxes, and where noise grows with the
    object's size (5 % of it, say) the large ones would overstate theirs. Matching with plain
    IoU keeps only the small boxes' luckier pairs, which biases s low, so the pairs are matched
    again with the slack s implies and s re-estimated: a few rounds settle it. Beyond
    ``ESTIMATE_PAIRS`` candidate pairs, every k-th (item, class) group's pairs are used (a box's
    best match needs all pairs of its group): the median of that many is already stable.
    """
    n_annotators = int(annotator.max()) + 1 if len(annotator) else 1
    if len(pair_i) > ESTIMATE_PAIRS:
        rows = np.flatnonzero(group % -(-len(pair_i) // ESTIMATE_PAIRS) == 0)
        renumber = np.full(len(group), -1, np.int64)
        renumber[rows] = np.arange(len(rows))
        pair_i, pair_j = renumber[pair_i], renumber[pair_j]
        sample = pair_i >= 0  # both ends are in the same group
        pair_i, pair_j = pair_i[sample], pair_j[sample]
        coords, annotator = coords[:, rows], annotator[rows]
    noise = 0.0
    for _ in range(rounds):
        iou = pair_iou(grown_boxes(coords, noise), pair_i, pair_j)
        keep = iou >= threshold
        if not keep.any():
            return noise
        src = np.r_[pair_i[keep], pair_j[keep]]
        dst = np.r_[pair_j[keep], pair_i[keep]]
        key = src * n_annotators + annotator[dst]
        # integer part orders (box, partner's annotator), the fraction puts the best IoU first
        order = np.argsort(key * 2.0 - np.r_[iou[keep], iou[keep]], kind="stable")
        best = order[np.r_[True, key[order][1:] != key[order][:-1]]]
        src, dst = src[best], dst[best]
        short_side = np.minimum(coords[2] - coords[0], coords[3] - coords[1])
        side = np.minimum(short_side[src], short_side[dst])
        small = side <= np.median(side)
        difference = coords[:, src[small]] - coords[:, dst[small]]
        noise = 1.4826 * float(np.median(np.abs(difference))) / np.sqrt(2.0)
    return noise


def cluster_by_iou(n: int, group: np.ndarray, annotator: np.ndarray, pair_i: np.ndarray,
                   pair_j: np.ndarray, pair_iou: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster id per object (= the index of its cluster's pivot); singletons are their own.

    ``group`` must be sorted and pairs must already exclude same-annotator pairs; see the module
    docstring for the rule. Each round is a few O(objects + live pairs) array operations.
    """
    cluster = np.full(n, -1, np.int64)
    if n == 0:
        return cluster
    keep = pair_iou >= threshold
    src, dst, weight = pair_i[keep], pair_j[keep], pair_iou[keep]
    group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    rows = np.arange(n)
    n_annotators = int(annotator.max()) + 1
    while len(src):
        score = np.bincount(src, weights=weight, minlength=n)
        score += np.bincount(dst, weights=weight, minlength=n)
        best = np.maximum.reduceat(score, group_starts)
        is_top = (score == np.repeat(best, np.diff(np.r_[group_starts, n]))) & (score > 0)
        # ties go to the lowest row, so the result does not depend on pair order
        pivot_of_group = np.minimum.reduceat(np.where(is_top, rows, n), group_starts)
        pivot_of_row = pivot_of_group[group]
        src_is_pivot = src == pivot_of_row[src]
        dst_is_pivot = dst == pivot_of_row[dst]
        p_src = np.r_[src[src_is_pivot], dst[dst_is_pivot]]
        p_dst = np.r_[dst[src_is_pivot], src[dst_is_pivot]]
        p_w = np.r_[weight[src_is_pivot], weight[dst_is_pivot]]
        # per (pivot, annotator of the partner): the partner with the highest IoU. One float
        # sort key instead of a 3-key lexsort: the integer part orders (pivot, annotator), the
        # fraction (IoU in [0, 1]) orders partners best-first within it.
        key = p_src * n_annotators + annotator[p_dst]
        order = np.argsort(key * 2.0 - p_w, kind="stable")
        key, p_src, p_dst = key[order], p_src[order], p_dst[order]
        first = np.r_[True, key[1:] != key[:-1]]
        cluster[p_dst[first]] = p_src[first]
        cluster[p_src] = p_src
        alive = (cluster[src] < 0) & (cluster[dst] < 0)
        src, dst, weight = src[alive], dst[alive], weight[alive]
    unclustered = cluster < 0
    cluster[unclustered] = np.flatnonzero(unclustered)
    return cluster


def _quorum(n_assigned: np.ndarray, quorum: int | None) -> np.ndarray:
    """Default quorum: a strict majority of the annotators who saw the item."""
    if quorum is not None:
        return np.full(len(n_assigned), int(quorum), np.int64)
    return n_assigned // 2 + 1


def _n_assigned(frame: pd.DataFrame, assignments: pd.DataFrame | None) -> np.ndarray:
    """Annotators who saw each row's item: column, assignments frame, or who drew anything."""
    if "n_assigned" in frame.columns and not frame["n_assigned"].isna().any():
        return frame["n_assigned"].to_numpy(np.int64)
    item_code, items = pd.factorize(frame["item_id"])
    annotator_code, _ = pd.factorize(frame["annotator_id"])
    pairs = _distinct(item_code.astype(np.int64) * (int(annotator_code.max()) + 1 if len(frame)
                                                    else 1) + annotator_code)
    drawn = np.bincount(pairs // (int(annotator_code.max()) + 1 if len(frame) else 1),
                        minlength=len(items))
    if assignments is None:
        return drawn[item_code]
    listed = assignments.drop_duplicates(["item_id", "annotator_id"]).groupby(
        "item_id", sort=False).size()
    # someone who drew on an item certainly saw it, whatever the assignment list says
    return np.maximum(listed.reindex(items).fillna(0).to_numpy(np.int64), drawn)[item_code]


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GeometryError(f"{what}: missing column(s) {', '.join(missing)}; "
                            f"expected {', '.join(columns)}")
    null = frame[[c for c in columns[:3]]].isna().any(axis=1).to_numpy()
    if null.any():
        rows = np.flatnonzero(null)
        raise GeometryError(f"{what}: {len(rows)} row(s) without item_id/annotator_id/label "
                            f"(first rows {rows[:5].tolist()})")


@dataclass
class _Prepared:
    """Grouping of the input rows. The input frame is never reordered: ``order`` lists its rows
    sorted by (item, class), and every other array here is in that sorted order."""

    frame: pd.DataFrame      # the input, index reset, original row order
    order: np.ndarray        # input row of each sorted position
    group: np.ndarray        # (item, class) group code per sorted position, non-decreasing
    annotator: np.ndarray    # annotator code per sorted position
    weight: np.ndarray       # reliability weight per sorted position (> 0)
    mean_weight: float       # mean weight over annotators (expected weight of an absent one)
    n_assigned: np.ndarray
    quorum: np.ndarray
    annotation_ids: pa.Array  # original row order
    annotators: pd.Index      # annotator id of each annotator code

    def reweighted(self, annotator_weights) -> _Prepared:
        per_annotator = _per_annotator_weights(self.annotators, annotator_weights)
        return replace(self, weight=per_annotator[self.annotator],
                       mean_weight=float(per_annotator.mean()) if len(per_annotator) else 1.0)


def _per_annotator_weights(annotators: pd.Index, annotator_weights) -> np.ndarray:
    if annotator_weights is None:
        return np.ones(len(annotators))
    weights = pd.Series(annotator_weights, dtype="float64")
    per_annotator = weights.reindex(annotators).fillna(
        weights.mean() if len(weights) else 1.0).to_numpy()
    # a zero weight would make a cluster's fused geometry undefined: floor it
    return np.maximum(np.nan_to_num(per_annotator, nan=1.0), 1e-3)


def _prepare(frame: pd.DataFrame, quorum: int | None, annotator_weights,
             assignments: pd.DataFrame | None) -> _Prepared:
    frame = frame.reset_index(drop=True)
    n = len(frame)
    n_assigned = _n_assigned(frame, assignments)
    item_code, _ = pd.factorize(frame["item_id"])
    label_code, _ = pd.factorize(frame["label"])
    annotator_code, annotators = pd.factorize(frame["annotator_id"])
    pair_key = item_code.astype(np.int64) * (int(label_code.max()) + 1 if n else 1) + label_code
    order = np.argsort(pair_key, kind="stable")
    sorted_key = pair_key[order]
    group = np.r_[0, np.cumsum(sorted_key[1:] != sorted_key[:-1])] if n else np.empty(0, np.int64)
    per_annotator = _per_annotator_weights(annotators, annotator_weights)
    # without annotation ids, provenance points at input row numbers ("row12")
    annotation_ids = (as_arrow_strings(frame["annotation_id"]) if "annotation_id" in frame
                      else pc.binary_join_element_wise(
                          "row", pa.array(np.arange(n)).cast(pa.string()), "").cast(
                              pa.large_string()))
    n_assigned = n_assigned[order]
    return _Prepared(frame=frame, order=order, group=group.astype(np.int64),
                     annotator=annotator_code[order].astype(np.int64),
                     weight=per_annotator[annotator_code[order]],
                     mean_weight=float(per_annotator.mean()) if len(per_annotator) else 1.0,
                     n_assigned=n_assigned, quorum=_quorum(n_assigned, quorum),
                     annotation_ids=annotation_ids, annotators=annotators)


def _assemble(prep: _Prepared, cluster: np.ndarray, fused_rows: dict[str, np.ndarray],
              iou_to_fused: np.ndarray) -> MergeResult:
    """Build merged / below-quorum / members frames from per-object cluster ids (sorted order)."""
    n = len(cluster)
    cluster_ids, cluster_code = cluster_codes(cluster)
    n_clusters = len(cluster_ids)
    n_members = np.bincount(cluster_code, minlength=n_clusters)
    member_weight = np.bincount(cluster_code, weights=prep.weight, minlength=n_clusters)
    agreement = np.bincount(cluster_code, weights=prep.weight * iou_to_fused,
                            minlength=n_clusters) / member_weight
    pivot = cluster_ids  # the pivot represents the cluster's item / label / quorum
    n_assigned = np.maximum(prep.n_assigned[pivot], n_members)
    expected = member_weight + (n_assigned - n_members) * prep.mean_weight
    confidence = np.clip(member_weight / expected * agreement, 0.0, 1.0)
    accepted_cluster = n_members >= prep.quorum[pivot]
    # back to input row order: members row k is input row k
    code_of_row = np.empty(n, np.int64)
    code_of_row[prep.order] = cluster_code
    iou_of_row = np.empty(n)
    iou_of_row[prep.order] = iou_to_fused
    ids = join_strings_by_group(prep.annotation_ids, code_of_row, n_clusters)
    pivot_row = prep.order[pivot]
    base = pd.DataFrame({
        "item_id": prep.frame["item_id"].take(pivot_row).to_numpy(),
        "label": prep.frame["label"].take(pivot_row).to_numpy(),
        **fused_rows,
        "confidence": confidence,
        "mean_iou": agreement,
        "n_annotators": n_members,
        "n_assigned": n_assigned,
        "annotation_ids": ids,
        "cluster": np.arange(n_clusters),
    })
    members = pd.DataFrame({
        "item_id": prep.frame["item_id"],
        "label": prep.frame["label"],
        "annotator_id": prep.frame["annotator_id"],
        "annotation_id": pd.arrays.ArrowStringArray(prep.annotation_ids),
        "cluster": code_of_row,
        "accepted": accepted_cluster[code_of_row],
        "iou_to_fused": iou_of_row,
        "n_assigned": n_assigned[code_of_row],
    })
    assert len(members) == n  # every input object is accounted for
    return MergeResult(merged=base[accepted_cluster].reset_index(drop=True),
                       below_quorum=base[~accepted_cluster].reset_index(drop=True),
                       members=members)


# --------------------------------------------------------------------------------------------
# boxes


def merge_boxes_by_iou(boxes: pd.DataFrame, iou_threshold: float = 0.5,
                       quorum: int | None = None, annotator_weights=None,
                       assignments: pd.DataFrame | None = None,
                       reweight: Callable[[MergeResult], pd.Series] | None = None,
                       pointing_noise: float | None = None) -> MergeResult:
    """Merge boxes of several annotators per item and class.

    ``boxes``: ``item_id, annotator_id, label, x_min, y_min, x_max, y_max`` (+ optional
    ``annotation_id`` for provenance, ``n_assigned`` = annotators who saw the item).
    ``assignments`` (``item_id, annotator_id``) says who saw which item when ``n_assigned`` is
    absent; otherwise it is the annotators who drew anything on the item. ``quorum``: minimum
    annotators per merged object (default: majority of ``n_assigned``).
    ``annotator_weights``: mapping / Series annotator_id -> reliability (default 1).
    ``reweight``: given the merge with these weights, new weights for a second fusion of the
    same clusters (clustering does not depend on weights, so it runs once).
    ``pointing_noise``: sd of the annotators' corner noise in the boxes' units (pixels); for the
    IoU test each box is grown by up to ``SLACK_PER_NOISE_SD`` times it (``grown_boxes``), so
    small boxes whose IoU that noise alone pulls below the threshold still match. Default:
    estimated from the boxes (``estimate_pointing_noise``, reported as
    ``result.pointing_noise``); 0 = plain IoU.
    """
    _require(boxes, BOX_COLUMNS, "boxes")
    coords = boxes[list(COORDS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise GeometryError(f"boxes: {len(rows)} row(s) with a missing or non-numeric "
                            f"coordinate (first rows {rows[:5].tolist()}); expected numbers in "
                            "x_min, y_min, x_max, y_max")
    prep = _prepare(boxes, quorum, annotator_weights, assignments)
    coords = np.ascontiguousarray(coords[prep.order].T)  # (4, n), sorted by (item, class)
    pair_i, pair_j = candidate_pairs(prep.group, prep.annotator)
    if pointing_noise is None:
        pointing_noise = estimate_pointing_noise(coords, prep.group, prep.annotator, pair_i,
                                                 pair_j, iou_threshold)
    pointing_noise = float(pointing_noise)
    if not np.isfinite(pointing_noise) or pointing_noise < 0:
        raise GeometryError(f"pointing_noise must be a number >= 0, got {pointing_noise}")
    ious = pair_iou(grown_boxes(coords, pointing_noise), pair_i, pair_j)
    cluster = cluster_by_iou(coords.shape[1], prep.group, prep.annotator, pair_i, pair_j, ious,
                             iou_threshold)
    cluster = absorb_into_quorum(cluster, coords, prep, iou_threshold, pointing_noise)
    result = _fuse_boxes(prep, coords, cluster)
    if reweight is not None:
        result = _fuse_boxes(prep.reweighted(reweight(result)), coords, cluster)
    return replace(result, pointing_noise=pointing_noise)


def _fuse_boxes(prep: _Prepared, coords: np.ndarray, cluster: np.ndarray) -> MergeResult:
    cluster_ids, cluster_code = cluster_codes(cluster)
    fused = _weighted_boxes(coords, cluster_code, len(cluster_ids), prep.weight)
    n = coords.shape[1]
    both = np.concatenate([coords, fused], axis=1)
    iou_to_fused = pair_iou(both, np.arange(n), n + cluster_code)
    return _assemble(prep, cluster, {c: fused[k] for k, c in enumerate(COORDS)}, iou_to_fused)


def _weighted_boxes(coords: np.ndarray, cluster_code: np.ndarray, n_clusters: int,
                    weight: np.ndarray) -> np.ndarray:
    """(4, n_clusters) weighted mean corners of each cluster's members."""
    total = np.bincount(cluster_code, weights=weight, minlength=n_clusters)
    fused = np.stack([np.bincount(cluster_code, weights=weight * coords[k], minlength=n_clusters)
                      for k in range(4)])
    return fused / np.maximum(total, 1e-300)


def absorb_into_quorum(cluster: np.ndarray, coords: np.ndarray, prep: _Prepared,
                       threshold: float, pointing_noise: float = 0.0) -> np.ndarray:
    """Move boxes of clusters below quorum into a quorum cluster whose *fused* box they overlap.

    Pivot clustering compares each box with one pivot box; under heavy jitter an annotator's box
    of the same object can miss the pivot (IoU < threshold) yet overlap the cluster's mean, which
    is closer to the object. Such a box is moved into the quorum cluster of its (item, class) it
    overlaps best, if that cluster has no box of its annotator yet (one per annotator stays
    guaranteed: per cluster and annotator only the best-overlapping box moves). One pass, all
    items at once; the fused boxes are then recomputed by the caller.
    """
    cluster_ids, code = cluster_codes(cluster)
    n_members = np.bincount(code, minlength=len(cluster_ids))
    quorum_cluster = n_members >= prep.quorum[cluster_ids]
    loose = np.flatnonzero(~quorum_cluster[code])
    targets = np.flatnonzero(quorum_cluster)  # cluster codes, ordered by pivot row -> by group
    if not len(loose) or not len(targets):
        return cluster
    target_group = prep.group[cluster_ids[targets]]
    first = np.searchsorted(target_group, prep.group[loose], side="left")
    count = np.searchsorted(target_group, prep.group[loose], side="right") - first
    row = np.repeat(loose, count)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    target = targets[np.repeat(first, count) + offset]
    # the target may not hold a box of this row's annotator already
    n_annotators = int(prep.annotator.max()) + 1
    present = np.sort(code * n_annotators + prep.annotator)
    key = target * n_annotators + prep.annotator[row]
    pos = np.minimum(np.searchsorted(present, key), len(present) - 1)
    row, target, key = row[present[pos] != key], target[present[pos] != key], key[present[pos] != key]
    fused = _weighted_boxes(coords, code, len(cluster_ids), prep.weight)
    both = np.concatenate([coords, fused[:, target]], axis=1)
    iou = pair_iou(grown_boxes(both, pointing_noise), row, coords.shape[1] + np.arange(len(row)))
    ok = iou >= threshold
    row, target, key, iou = row[ok], target[ok], key[ok], iou[ok]
    best_first = np.argsort(-iou, kind="stable")
    row, target, key = row[best_first], target[best_first], key[best_first]
    _, one_per_row = np.unique(row, return_index=True)  # each row's best target
    keep = np.zeros(len(row), bool)
    keep[one_per_row] = True
    _, one_per_key = np.unique(np.where(keep, key, -1 - np.arange(len(key))), return_index=True)
    chosen = np.zeros(len(row), bool)
    chosen[one_per_key] = keep[one_per_key]  # and each (cluster, annotator) its best row
    moved = cluster.copy()
    moved[row[chosen]] = cluster_ids[target[chosen]]
    return moved


# --------------------------------------------------------------------------------------------
# polygons


def _polygons_from_wkb(frame: pd.DataFrame) -> np.ndarray:
    wkb = frame["geometry_wkb"].to_numpy(dtype=object)
    missing = pd.isna(frame["geometry_wkb"]).to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise GeometryError(f"polygons: {len(rows)} row(s) without geometry_wkb "
                            f"(first rows {rows[:5].tolist()}); expected WKB polygons")
    try:
        geoms = shapely.from_wkb(wkb)
    except shapely.errors.GEOSException as exc:
        raise GeometryError(f"polygons: geometry_wkb is not valid WKB ({exc})") from None
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        # self-intersecting rings would make intersection() raise; repair rather than drop
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    return geoms


def polygon_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two arrays of shapely polygons (valid ones: GEOS intersection)."""
    if len(a) == 0:
        return np.empty(0)
    inter = shapely.area(shapely.intersection(a, b))
    union = shapely.area(a) + shapely.area(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def merge_polygons_by_iou(polygons: pd.DataFrame, iou_threshold: float = 0.5,
                          quorum: int | None = None, annotator_weights=None,
                          assignments: pd.DataFrame | None = None) -> MergeResult:
    """Same clustering as ``merge_boxes_by_iou`` on WKB polygons (shapely 2, vectorized).

    The fused polygon is the cluster's weighted medoid (see the module docstring); the merged
    rows carry its WKB in ``geometry_wkb`` and its bounds in ``x_min .. y_max``.
    """
    _require(polygons, POLYGON_COLUMNS, "polygons")
    geoms = _polygons_from_wkb(polygons.reset_index(drop=True))
    prep = _prepare(polygons, quorum, annotator_weights, assignments)
    geoms = geoms[prep.order]
    bounds = shapely.bounds(geoms)
    pair_i, pair_j = candidate_pairs(prep.group, prep.annotator)
    # only pairs whose bounding boxes overlap can have a positive polygon IoU
    overlap = pair_iou(np.ascontiguousarray(bounds.T), pair_i, pair_j) > 0
    pair_i, pair_j = pair_i[overlap], pair_j[overlap]
    ious = polygon_iou(geoms[pair_i], geoms[pair_j])
    n = len(geoms)
    cluster = cluster_by_iou(n, prep.group, prep.annotator, pair_i, pair_j, ious,
                             iou_threshold)
    # medoid: highest weight × (1 + summed IoU to the other members of its cluster)
    same = cluster[pair_i] == cluster[pair_j]
    summed = (np.bincount(pair_i[same], weights=ious[same], minlength=n)
              + np.bincount(pair_j[same], weights=ious[same], minlength=n))
    score = prep.weight * (1.0 + summed)
    cluster_ids, cluster_code = cluster_codes(cluster)
    order = np.lexsort((-score, cluster_code))
    first = np.r_[True, cluster_code[order][1:] != cluster_code[order][:-1]]
    medoid = order[first]  # one per cluster, in cluster_code order
    fused_geoms = geoms[medoid]
    iou_to_fused = polygon_iou(geoms, fused_geoms[cluster_code])
    fb = shapely.bounds(fused_geoms)
    fused_rows = {c: fb[:, k] for k, c in enumerate(COORDS)}
    fused_rows["geometry_wkb"] = shapely.to_wkb(fused_geoms)
    return _assemble(prep, cluster, fused_rows, iou_to_fused)
