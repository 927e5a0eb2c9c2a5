"""``diff_releases``: what an ML engineer reads to know whether label fixes reached a release."""

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.contracts import CONSENSUS_LABELS
from annotation_pipeline.release.diff import diff_releases


def labels(rows: list[dict]) -> pd.DataFrame:
    full = [{"x_min": np.nan, "y_min": np.nan, "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None,
             "confidence": 0.9, "n_annotators": 3, "n_assigned": 3, "method": "ds", "annotation_ids": "a",
             **r} for r in rows]
    return CONSENSUS_LABELS.conform(pd.DataFrame(full))


def box(item, label, x, y, w=20, h=20):
    return {"item_id": item, "kind": "box", "label": label, "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}


def test_scene_labels_are_added_changed_removed_by_item():
    old = labels([{"item_id": "a", "kind": "choice", "label": "day"},
                  {"item_id": "b", "kind": "choice", "label": "fog"},
                  {"item_id": "c", "kind": "choice", "label": "rain"}])
    new = labels([{"item_id": "a", "kind": "choice", "label": "day"},
                  {"item_id": "b", "kind": "choice", "label": "night"},
                  {"item_id": "d", "kind": "choice", "label": "day"}])
    d = diff_releases(old, new)
    got = {(r.change, r.item_id, r.old_label if pd.notna(r.old_label) else None,
            r.new_label if pd.notna(r.new_label) else None) for r in d.changes.itertuples()}
    assert got == {("changed", "b", "fog", "night"), ("removed", "c", "rain", None), ("added", "d", None, "day")}
    assert d.summary() == {"added": 1, "changed": 1, "removed": 1, "unchanged": 1, "items_touched": 3}
    by_class = d.by_class()
    assert by_class.loc["fog", "changed_from"] == 1 and by_class.loc["night", "changed_to"] == 1


def test_objects_are_matched_by_overlap_each_at_most_once():
    old = labels([box("a", "car", 0, 0), box("a", "car", 100, 100), box("a", "person", 200, 0)])
    # first car moved slightly (same), second car relabeled, person gone, a new bike far away
    new = labels([box("a", "car", 2, 1), box("a", "truck", 101, 100), box("a", "bike", 300, 300),
                  box("a", "car", 1, 0)])  # a second box on the first car: one of the two is new
    d = diff_releases(old, new)
    counts = d.changes["change"].value_counts().to_dict()
    assert counts == {"added": 2, "changed": 1, "removed": 1} and d.n_unchanged == 1
    changed = d.changes[d.changes["change"] == "changed"].iloc[0]
    assert (changed.old_label, changed.new_label) == ("car", "truck") and changed.iou > 0.9


def test_polygons_are_matched_by_polygon_overlap():
    square = shapely.to_wkb(shapely.box(0, 0, 10, 10))
    moved = shapely.to_wkb(shapely.box(1, 0, 11, 10))
    far = shapely.to_wkb(shapely.box(50, 50, 60, 60))
    poly = {"kind": "polygon", "x_min": 0.0, "y_min": 0.0, "x_max": 10.0, "y_max": 10.0}
    old = labels([{**poly, "item_id": "p", "label": "road", "geometry_wkb": square}])
    new = labels([{**poly, "item_id": "p", "label": "sidewalk", "geometry_wkb": moved},
                  {**poly, "item_id": "p", "label": "road", "geometry_wkb": far}])
    d = diff_releases(old, new)
    assert d.summary()["changed"] == 1 and d.summary()["added"] == 1 and d.summary()["removed"] == 0


def test_identical_releases_have_no_difference():
    same = labels([{"item_id": "a", "kind": "choice", "label": "day"}, box("a", "car", 0, 0)])
    d = diff_releases(same, same.sample(frac=1, random_state=0))
    assert d.changes.empty and d.n_unchanged == 2 and d.by_class().empty
