"""A release's COCO and Label Studio exports read back by our own intake with nothing lost."""

import json

import numpy as np
import pandas as pd
import pytest
import shapely

from annotation_pipeline.contracts import CONSENSUS_LABELS, VENDOR_TASKS
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.release.exports import to_coco, to_label_studio
from annotation_pipeline.vendor.intake import intake_vendor_returns

BATCH, VENDOR = "release-export", "export"


@pytest.fixture
def release():
    rng = np.random.default_rng(3)
    rows, images = [], []
    for n in range(12):
        item = f"item{n:03d}"
        images.append({"item_id": item, "file_name": f"{item}.png", "width": 320, "height": 240})
        rows.append({"item_id": item, "kind": "choice", "label": ["day", "night", "fog", "rain"][n % 4]})
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 200), rng.uniform(0, 150)
            rows.append({"item_id": item, "kind": "box", "label": ["car", "person", "bike"][n % 3],
                         "x_min": x, "y_min": y, "x_max": x + rng.uniform(8, 100), "y_max": y + rng.uniform(8, 80)})
        if n % 4 == 0:
            poly = shapely.box(10, 10, 60, 40)
            rows.append({"item_id": item, "kind": "polygon", "label": "sign", "x_min": 10.0, "y_min": 10.0,
                         "x_max": 60.0, "y_max": 40.0, "geometry_wkb": shapely.to_wkb(poly)})
    labels = pd.DataFrame(rows)
    labels = labels.assign(confidence=rng.uniform(0.5, 1, len(labels)), n_annotators=3, n_assigned=3,
                           method="ds", annotation_ids="a b c")
    return CONSENSUS_LABELS.conform(labels), pd.DataFrame(images)


def _tasks(images: pd.DataFrame, task_ids) -> pd.DataFrame:
    return VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": BATCH, "task_id": [str(t) for t in task_ids], "item_id": images["item_id"], "is_gold": False,
        "vendor": VENDOR, "image_file": images["file_name"], "image_width": images["width"].astype(float),
        "image_height": images["height"].astype(float), "overlap": 1, "ontology_version": "1.0.0",
        "guidelines_version": "v1", "model_version": "m"}))


def _read_back(tmp_path, name: str, document, tasks: pd.DataFrame) -> pd.DataFrame:
    inbox = tmp_path / "inbox"
    (inbox / BATCH).mkdir(parents=True)
    path = inbox / BATCH / name
    path.write_text(json.dumps(document, allow_nan=False))
    result = intake_vendor_returns([path], inbox, tasks, load_ontology(), vendor=VENDOR)
    assert result.quarantine.empty, result.quarantine[["reason", "detail"]].head().to_dict("records")
    return result.annotations


def _same_labels(labels: pd.DataFrame, back: pd.DataFrame) -> None:
    assert len(back) == len(labels)
    key = ["item_id", "kind", "label"]
    assert back[key].value_counts().sort_index().equals(labels[key].value_counts().sort_index())
    boxes, got = labels[labels["kind"] == "box"], back[back["kind"] == "box"]
    coords = ["x_min", "y_min", "x_max", "y_max"]
    np.testing.assert_allclose(np.sort(got[coords].to_numpy(float), axis=0),
                               np.sort(boxes[coords].to_numpy(float), axis=0), atol=0.02)
    polys = back[back["kind"] == "polygon"]
    assert len(polys) == (labels["kind"] == "polygon").sum()
    assert np.allclose(shapely.area(shapely.from_wkb(polys["geometry_wkb"].to_numpy(object))), 1500, atol=1)


def test_coco_export_reads_back_through_intake(tmp_path, release):
    labels, images = release
    coco = to_coco(labels, images, load_ontology(), release="v0007")
    assert [c["name"] for c in coco["categories"]][:4] == ["day", "night", "fog", "rain"]
    assert {a["annotator_id"] for a in coco["annotations"]} == {"consensus"}
    back = _read_back(tmp_path, "coco.json", coco, _tasks(images.sort_values("item_id"), range(1, 13)))
    _same_labels(labels, back)


def test_label_studio_export_reads_back_through_intake(tmp_path, release):
    labels, images = release
    tasks = to_label_studio(labels, images, load_ontology())
    assert all(t["annotations"][0]["result"] for t in tasks)
    back = _read_back(tmp_path, "label_studio.json", tasks,
                      _tasks(images.sort_values("item_id"), [t["id"] for t in tasks]))
    _same_labels(labels, back)
    assert set(back["annotator_id"]) == {"consensus"}


def test_an_item_without_its_image_size_is_refused_by_name(release):
    labels, images = release
    with pytest.raises(ValueError, match="item011"):
        to_coco(labels, images[images["item_id"] != "item011"], load_ontology())
