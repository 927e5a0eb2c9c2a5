"""Box and polygon merging: one object per annotator per cluster, quorum, weights, provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from annotation_pipeline.consensus.boxes import (
    COORDS,
    GeometryError,
    box_iou,
    candidate_pairs,
    merge_boxes_by_iou,
    merge_polygons_by_iou,
)
from annotation_pipeline.consensus.provenance import join_strings_by_group


def frame(rows, columns=("item_id", "annotator_id", "label", "x_min", "y_min", "x_max", "y_max")):
    return pd.DataFrame(rows, columns=list(columns))


def test_box_iou_matches_shapely_on_random_boxes():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (500, 2, 2)), axis=1).reshape(500, 4)
    b = np.sort(rng.uniform(0, 100, (500, 2, 2)), axis=1).reshape(500, 4)
    pa_, pb_ = shapely.box(*a.T), shapely.box(*b.T)
    inter = shapely.area(shapely.intersection(pa_, pb_))
    expected = inter / (shapely.area(pa_) + shapely.area(pb_) - inter)
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-12)


def test_candidate_pairs_cover_every_cross_annotator_pair_inside_a_group():
    group = np.array([0, 0, 0, 1, 1, 2])
    annotator = np.array([0, 1, 0, 0, 1, 0])
    i, j = candidate_pairs(group, annotator)
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 2), (3, 4)]


def test_two_boxes_of_the_same_annotator_never_merge_into_one_object():
    # a0 drew the same car twice; WBF would fuse both. Here one of them stays apart.
    rows = [("img", "a0", "car", 10, 10, 50, 50), ("img", "a0", "car", 11, 11, 51, 51),
            ("img", "a1", "car", 10, 10, 50, 50), ("img", "a2", "car", 10, 11, 50, 50)]
    result = merge_boxes_by_iou(frame(rows))
    assert len(result.merged) == 1 and result.merged.loc[0, "n_annotators"] == 3
    assert len(result.below_quorum) == 1 and result.below_quorum.loc[0, "n_annotators"] == 1
    for _, cluster in result.members.groupby("cluster"):
        assert cluster["annotator_id"].is_unique


def test_quorum_is_a_majority_of_the_annotators_who_saw_the_item():
    rows = [("img", "a0", "car", 0, 0, 10, 10), ("img", "a1", "car", 0, 0, 10, 10)]
    saw = pd.DataFrame({"item_id": "img", "annotator_id": ["a0", "a1", "a2", "a3", "a4"]})
    result = merge_boxes_by_iou(frame(rows), assignments=saw)
    assert result.merged.empty  # 2 of 5 is below a majority of 3
    assert result.below_quorum.loc[0, "n_assigned"] == 5
    assert len(merge_boxes_by_iou(frame(rows), assignments=saw, quorum=2).merged) == 1


def test_fused_box_is_the_reliability_weighted_mean_and_confidence_drops_with_support():
    rows = [("img", "a0", "car", 0, 0, 10, 10), ("img", "a1", "car", 2, 0, 12, 10),
            ("img", "a2", "car", 1, 0, 11, 10)]
    result = merge_boxes_by_iou(frame(rows), annotator_weights={"a0": 3.0, "a1": 1.0, "a2": 0.0})
    merged = result.merged.iloc[0]
    # a2's weight 0 is floored at 1e-3 so an all-zero cluster still has a geometry
    expected = (3 * 0 + 1 * 2 + 1e-3 * 1) / (4 + 1e-3)
    assert merged["x_min"] == pytest.approx(expected)
    saw = pd.DataFrame({"item_id": "img", "annotator_id": [f"a{k}" for k in range(5)]})
    fewer = merge_boxes_by_iou(frame(rows), assignments=saw).merged.iloc[0]
    all_seen = merge_boxes_by_iou(frame(rows)).merged.iloc[0]
    assert fewer["confidence"] < all_seen["confidence"] <= 1.0


def test_every_box_is_either_in_a_merged_object_or_below_quorum_with_its_annotation_id():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 500, (100, 2))
    rows = []
    for item in range(100):
        for annotator in range(5):
            if rng.random() < 0.2:
                continue  # a miss
            x, y = truth[item] + rng.normal(0, 1, 2)
            rows.append((f"i{item}", f"a{annotator}", "car", x, y, x + 40, y + 30))
        rows.append((f"i{item}", "spam", "car", *rng.uniform(0, 500, 2), 600, 600))
    boxes = frame(rows).assign(annotation_id=[f"id{k}" for k in range(len(rows))])
    result = merge_boxes_by_iou(boxes)
    ids = " ".join(pd.concat([result.merged["annotation_ids"],
                              result.below_quorum["annotation_ids"]])).split()
    assert sorted(ids) == sorted(boxes["annotation_id"])
    assert result.counts["objects_received"] == len(boxes)
    assert (result.merged["n_annotators"].sum() + result.below_quorum["n_annotators"].sum()
            == len(boxes))
    assert len(result.merged) >= 95  # almost every true object reaches a 3-of-6 majority


def test_a_box_that_misses_the_pivot_but_overlaps_the_fused_box_joins_the_quorum_object():
    # pivot a0 = [0, 10]; a4's box overlaps it at IoU 0.45 but the mean of a0..a3 at 0.52
    xs = {"a0": 0.0, "a1": 0.0, "a2": 0.0, "a3": 2.5, "a4": 3.8}
    rows = [("img", a, "car", x, 0.0, x + 10.0, 10.0) for a, x in xs.items()]
    result = merge_boxes_by_iou(frame(rows))
    assert len(result.merged) == 1 and result.below_quorum.empty
    assert result.merged.loc[0, "n_annotators"] == 5
    assert result.merged.loc[0, "x_min"] == pytest.approx(np.mean(list(xs.values())))


def test_absorbing_keeps_one_box_per_annotator_per_object_under_heavy_jitter():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 80, (200, 2))
    rows = [(f"img{i % 40}", f"a{k}", "car", x + rng.normal(0, 3), y + rng.normal(0, 3),
             x + 15 + rng.normal(0, 3), y + 15 + rng.normal(0, 3))
            for i, (x, y) in enumerate(truth) for k in range(5) for _ in range(1 + (k == 0))]
    result = merge_boxes_by_iou(frame(rows))
    members = result.members
    assert not members.duplicated(["cluster", "annotator_id"]).any()
    assert len(members) == len(rows)
    assert members["accepted"].sum() == result.merged["n_annotators"].sum()


def test_labels_are_never_mixed_and_items_never_mixed():
    rows = [("img1", "a0", "car", 0, 0, 10, 10), ("img1", "a1", "person", 0, 0, 10, 10),
            ("img2", "a1", "car", 0, 0, 10, 10)]
    result = merge_boxes_by_iou(frame(rows), quorum=1)
    assert len(result.merged) == 3 and result.merged["n_annotators"].eq(1).all()


def test_non_numeric_coordinates_are_rejected_naming_the_rows():
    rows = [("img", "a0", "car", 0, 0, 10, 10), ("img", "a1", "car", "x", 0, 10, 10)]
    with pytest.raises(GeometryError, match=r"non-numeric coordinate \(first rows \[1\]\)"):
        merge_boxes_by_iou(frame(rows))
    with pytest.raises(GeometryError, match="missing column"):
        merge_boxes_by_iou(frame(rows).drop(columns="y_max"))


def test_polygons_merge_to_the_medoid_drawn_by_one_annotator():
    # a2's outline sits between a0's and a1's and has an extra vertex: vertex averaging would
    # not even be defined, the medoid is simply a2's polygon
    shapes = [shapely.box(0, 0, 10, 10), shapely.box(2, 0, 12, 10),
              shapely.Polygon([(1, 0), (6, 0), (11, 0), (11, 10), (1, 10)]),
              shapely.Polygon([(50, 50), (60, 50), (55, 60)])]
    polygons = pd.DataFrame({"item_id": "img", "annotator_id": ["a0", "a1", "a2", "a1"],
                             "label": "sign", "geometry_wkb": shapely.to_wkb(shapes)})
    result = merge_polygons_by_iou(polygons)
    assert len(result.merged) == 1 and len(result.below_quorum) == 1
    fused = shapely.from_wkb(result.merged.loc[0, "geometry_wkb"])
    assert fused.equals(shapes[2])
    assert result.merged.loc[0, "x_min"] == pytest.approx(1.0)
    members = result.members[result.members.accepted].set_index("annotator_id")
    assert members.loc["a0", "iou_to_fused"] == pytest.approx(9 / 11)


def test_a_self_intersecting_polygon_is_repaired_not_dropped():
    bowtie = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    square = shapely.box(0, 0, 10, 10)
    polygons = pd.DataFrame({"item_id": "img", "annotator_id": ["a0", "a1"], "label": "sign",
                             "geometry_wkb": shapely.to_wkb([bowtie, square])})
    result = merge_polygons_by_iou(polygons, quorum=1)
    assert result.counts["objects_received"] == 2


def test_join_strings_by_group_keeps_input_order_inside_each_group():
    joined = join_strings_by_group(np.array(["a", "b", "c", "d"], dtype=object),
                                   np.array([1, 0, 1, 1]), 3)
    assert joined.tolist() == ["b", "a c d", ""]


def _drawn_by(annotators: int, truth: np.ndarray, noise: float, seed: int) -> pd.DataFrame:
    """Every annotator draws every true box (item, x0, y0, x1, y1) with N(0, noise) corners."""
    rng = np.random.default_rng(seed)
    corners = truth[:, None, 1:] + rng.normal(0, noise, (len(truth), annotators, 4))
    return pd.DataFrame({
        "item_id": np.repeat(truth[:, 0].astype(int), annotators),
        "annotator_id": np.tile([f"a{k}" for k in range(annotators)], len(truth)),
        "label": "dot", **{c: corners[..., k].ravel() for k, c in enumerate(COORDS)}})


def _wbf(boxes: pd.DataFrame, iou_thr: float, size: float = 1000.0) -> pd.DataFrame:
    """ensemble-boxes' weighted boxes fusion per item (all scores 1), back in pixels."""
    ensemble_boxes = pytest.importorskip("ensemble_boxes")
    out = []
    for item, img in boxes.groupby("item_id"):
        lists = [g[list(COORDS)].to_numpy() / size for _, g in img.groupby("annotator_id")]
        fused, scores, _ = ensemble_boxes.weighted_boxes_fusion(
            lists, [np.ones(len(b)) for b in lists], [np.zeros(len(b)) for b in lists],
            iou_thr=iou_thr, skip_box_thr=0.0)
        out.append(pd.DataFrame(fused * size, columns=list(COORDS)).assign(
            item_id=item, n_annotators=np.rint(scores * len(lists)).astype(int)))
    return pd.concat(out).sort_values(["item_id", "x_min"]).reset_index(drop=True)


def test_small_boxes_of_three_annotators_with_pixel_jitter_merge_into_one_object_each():
    # 5-8 px dots, far apart, corners within ~1 px: two boxes of one dot often overlap at
    # IoU < 0.5, yet every dot is one object of all 3 annotators. Oracle: WBF with a near-zero
    # IoU threshold, which on isolated objects fuses each object's boxes into their mean.
    rng = np.random.default_rng(7)
    corner = rng.uniform(50, 900, (60, 2))
    size = rng.uniform(5, 8, (60, 1))
    truth = np.c_[np.arange(60), corner, corner + size]
    boxes = _drawn_by(3, truth, 0.8, seed=8)
    result = merge_boxes_by_iou(boxes)
    assert result.below_quorum.empty
    assert result.merged["n_annotators"].eq(3).all() and len(result.merged) == 60
    expected = _wbf(boxes, iou_thr=0.01)
    assert expected["n_annotators"].eq(3).all()
    ours = result.merged.sort_values(["item_id", "x_min"]).reset_index(drop=True)
    np.testing.assert_allclose(ours[list(COORDS)], expected[list(COORDS)], atol=1e-3)  # WBF: float32
    assert 0.6 < result.pointing_noise < 1.0  # drawn with sd 0.8


def test_crowded_neighbours_of_one_class_stay_apart():
    # rows of 30 px and of 9 px boxes overlapping their neighbours (IoU ~0.35 and ~0.2):
    # allowing for the annotators' pointing noise must not fuse two neighbours. Oracle: WBF at
    # IoU 0.5, which separates these neighbours too.
    big = [(item, 100 + 14 * k, 100, 130 + 14 * k, 130) for item in range(20) for k in range(6)]
    tiny = [(20 + item, 300 + 5.5 * k, 300, 309 + 5.5 * k, 309) for item in range(20)
            for k in range(6)]
    truth = np.array(big + tiny, dtype=float)
    boxes = _drawn_by(5, truth, 0.4, seed=9)
    result = merge_boxes_by_iou(boxes)
    assert len(result.merged) == len(truth) and result.merged["n_annotators"].eq(5).all()
    expected = _wbf(boxes, iou_thr=0.5)
    assert len(expected) == len(truth)
    ours = result.merged.sort_values(["item_id", "x_min"]).reset_index(drop=True)
    np.testing.assert_allclose(ours[list(COORDS)], expected[list(COORDS)], atol=1e-3)  # WBF: float32


def test_the_pointing_noise_is_measured_in_pixels_on_objects_of_every_size_despite_a_spammer():
    rng = np.random.default_rng(11)
    corner = rng.uniform(0, 600, (300, 2))
    truth = np.c_[np.arange(300) // 3, corner, corner + rng.uniform(4, 200, (300, 2))]
    boxes = _drawn_by(5, truth, 1.5, seed=12)
    spam_corner = rng.uniform(0, 600, (100, 2))
    spam = pd.DataFrame({"item_id": np.arange(100), "annotator_id": "spammer", "label": "dot",
                         **dict(zip(COORDS, np.c_[spam_corner, spam_corner + 40].T))})
    result = merge_boxes_by_iou(pd.concat([boxes, spam]))
    assert result.pointing_noise == pytest.approx(1.5, rel=0.15)
    assert merge_boxes_by_iou(boxes, pointing_noise=0).pointing_noise == 0
