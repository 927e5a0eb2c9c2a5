"""Returns carry their batch, and a rotated view is turned back into the image's own frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    CAR,
    SIGN,
    VENDOR,
    H,
    W,
    answer,
    choice,
    dumps,
    make_tasks,
    valid_export,
)

BATCH_A, BATCH_B = "simvendor-2026-11-01-aaaa1111", "simvendor-2026-11-01-bbbb2222"


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


def _tasks(batch_id: str):
    """Handoff tasks whose image names carry the batch digest, as vendor.handoff names them."""
    tasks = make_tasks(batch_id=batch_id)
    tasks["image_file"] = tasks["image_file"].str.replace(".png", f"-{batch_id.rsplit('-', 1)[-1]}.png")
    return tasks


def _export_of(batch_id: str, annotator: str) -> list[dict]:
    export = valid_export(annotator)
    for task in export:
        task["data"]["image"] = task["data"]["image"].replace(".png", f"-{batch_id.rsplit('-', 1)[-1]}.png")
    return export


def test_another_batchs_export_in_this_inbox_is_quarantined_as_wrong_batch(tmp_path, ontology):
    from annotation_pipeline.vendor.returns import process_vendor_returns
    from annotation_pipeline_tests.malformed.corpus import gold_labels

    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    for batch_id in (BATCH_A, BATCH_B):
        (inbox / batch_id).mkdir(parents=True)
        (inbox / batch_id / "ann-01.json").write_bytes(dumps(_export_of(batch_id, "ann-01")))
    # B's export, byte for byte, dropped into A's inbox as well: same task ids 1..6
    (inbox / BATCH_A / "ann-01-of-b.json").write_bytes(dumps(_export_of(BATCH_B, "ann-01")))
    tasks = pd.concat([_tasks(BATCH_A), _tasks(BATCH_B)], ignore_index=True)
    report = process_vendor_returns({BATCH_A: (inbox, []), BATCH_B: (inbox, [])}, tasks, gold_labels(),
                                    ontology.raw, vendor=VENDOR, already_ingested_sha256=set(),
                                    partition_date="2026-11-02")
    files = report.files.set_index("source_file")
    foreign = files.loc[f"{BATCH_A}/ann-01-of-b.json"]
    assert (foreign["status"], foreign["reason"], foreign["n_quarantined"]) == ("quarantined", "wrong_batch", 18)
    assert BATCH_B in foreign["detail"] and "move the file" in foreign["detail"]
    # the same bytes in their own folder are read (not taken for a duplicate of the foreign copy)
    assert files.loc[f"{BATCH_B}/ann-01.json", "status"] == "accepted"
    assert report.accepted.groupby("batch_id").size().to_dict() == {BATCH_A: 18, BATCH_B: 18}
    assert report.reconciles and report.counts()["files_quarantined"] == 1


def test_a_coco_export_of_another_batch_is_wrong_batch_too(tmp_path, ontology):
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    (inbox / BATCH_A).mkdir(parents=True)
    x, y, w, h = CAR
    coco = {"images": [{"id": 1, "file_name": "t00001-bbbb2222.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h]}]}
    path = inbox / BATCH_A / "coco.json"
    path.write_bytes(dumps(coco))
    result = intake_vendor_returns([path], inbox, _tasks(BATCH_A), ontology, vendor=VENDOR)
    assert result.files["reason"].tolist() == ["wrong_batch"] and result.quarantine["reason"].tolist() == ["wrong_batch"]
    assert "never sent" in result.quarantine["detail"].iloc[0]


def test_one_wrong_image_in_an_export_of_this_batch_stays_a_row_problem(tmp_path, ontology):
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    (inbox / BATCH_A).mkdir(parents=True)
    export = _export_of(BATCH_A, "ann-01")
    export[0]["data"]["image"] = "images/t00001-bbbb2222.png"
    path = inbox / BATCH_A / "ann-01.json"
    path.write_bytes(dumps(export))
    result = intake_vendor_returns([path], inbox, _tasks(BATCH_A), ontology, vendor=VENDOR)
    assert result.files["status"].tolist() == ["accepted"]
    assert result.quarantine["reason"].value_counts().to_dict() == {"task_image_mismatch": 3}
    assert result.n_accepted == 15


# ---------------------------------------------------------------- image_rotation

def _turn(x: np.ndarray, y: np.ndarray, degrees: int) -> tuple[np.ndarray, np.ndarray]:
    """Where pixel (x, y) of a W x H image appears once the image is shown turned clockwise."""
    return {0: (x, y), 90: (H - y, x), 180: (W - x, H - y), 270: (y, W - x)}[degrees]


def _shown_size(degrees: int) -> tuple[float, float]:
    return (H, W) if degrees in (90, 270) else (W, H)


def _rotated_answer(degrees: int) -> list[dict]:
    """Task 1 answered on the view turned by ``degrees``: a car box and a sign outline."""
    sw, sh = _shown_size(degrees)
    x, y, w, h = CAR
    u, v = _turn(np.array([x, x + w]), np.array([y, y + h]), degrees)
    box = {"id": "b", "type": "rectanglelabels", "original_width": int(sw), "original_height": int(sh),
           "image_rotation": degrees,
           "value": {"x": 100 * u.min() / sw, "y": 100 * v.min() / sh, "width": 100 * np.ptp(u) / sw,
                     "height": 100 * np.ptp(v) / sh, "rotation": 0, "rectanglelabels": ["car"]}}
    pu, pv = _turn(*np.array(SIGN).T, degrees)
    outline = {"id": "p", "type": "polygonlabels", "original_width": int(sw), "original_height": int(sh),
               "image_rotation": degrees,
               "value": {"points": np.column_stack([100 * pu / sw, 100 * pv / sh]).tolist(),
                         "polygonlabels": ["sign"]}}
    return [{"id": 1, "data": {"image": "images/t00001.png"},
             "annotations": [answer("ann-01", [choice("day"), box, outline])]}]


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_rotated_view_is_turned_back_into_the_image_frame(tmp_path, ontology, degrees):
    inbox = tmp_path / "inbox"
    (inbox / "b").mkdir(parents=True)
    path = inbox / "b" / "rotated.json"
    path.write_bytes(dumps(_rotated_answer(degrees)))
    result = intake_vendor_returns([path], inbox, make_tasks(batch_id="b"), ontology, vendor="simvendor")
    assert result.n_quarantined == 0, result.quarantine[["reason", "detail"]].to_string()
    a = result.annotations.set_index("kind")
    x, y, w, h = CAR
    assert a.loc["box", ["x_min", "y_min", "x_max", "y_max"]].tolist() == pytest.approx([x, y, x + w, y + h])
    assert shapely.from_wkb(a.loc["polygon", "geometry_wkb"]).normalize().equals_exact(
        shapely.Polygon(SIGN).normalize(), tolerance=1e-6)
    assert (a.loc["box", "image_width"], a.loc["box", "image_height"]) == (W, H)


@pytest.mark.parametrize("degrees", [45, "90", -450.5, None])
def test_a_rotation_that_is_not_a_quarter_turn_is_quarantined(tmp_path, ontology, degrees):
    inbox = tmp_path / "inbox"
    (inbox / "b").mkdir(parents=True)
    export = _rotated_answer(90)
    for result in export[0]["annotations"][0]["result"][1:]:
        result["image_rotation"] = degrees
    path = inbox / "b" / "rotated.json"
    path.write_bytes(dumps(export))
    result = intake_vendor_returns([path], inbox, make_tasks(batch_id="b"), ontology, vendor="simvendor")
    if degrees == "90":  # a numeric string is read as the number, as every other value is
        assert result.n_quarantined == 0
    elif degrees is None:  # no rotation given: read as unturned, and the box lands elsewhere (QA's job)
        assert result.n_accepted == 3
    else:
        assert result.quarantine["reason"].tolist() == ["unsupported_image_rotation"] * 2
        assert "quarter turns" in result.quarantine["detail"].iloc[0]
