"""Vendor return intake: every file and every row ends accepted or quarantined, with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    BATCH,
    CAR,
    SIGN,
    VENDOR,
    H,
    W,
    answer,
    box,
    choice,
    dumps,
    make_tasks,
    malformed_cases,
    polygon,
    task,
    valid_export,
    write_corpus,
)


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "vendors" / VENDOR / "inbox"
    (folder / BATCH).mkdir(parents=True)
    return folder


def _write(inbox: Path, name: str, content: bytes) -> Path:
    path = inbox / BATCH / name
    path.write_bytes(content)
    return path


def _intake(files, inbox, ontology, **kw):
    return intake_vendor_returns(files, inbox, make_tasks(), ontology, vendor=VENDOR, **kw)


def test_label_studio_percent_coordinates_become_pixels(inbox, ontology):
    path = _write(inbox, "ann-01.json", dumps(valid_export("ann-01", task_ids=(1,))))
    result = _intake([path], inbox, ontology)
    a = result.annotations.set_index("kind")
    x, y, w, h = CAR
    assert a.loc["box", ["x_min", "y_min", "x_max", "y_max"]].tolist() == pytest.approx([x, y, x + w, y + h])
    sign = shapely.from_wkb(a.loc["polygon", "geometry_wkb"])
    assert sign.equals_exact(shapely.Polygon(SIGN), tolerance=1e-9)
    assert a.loc["choice", "label"] == "day"
    assert set(result.annotations["annotator_id"]) == {"ann-01"}
    assert result.annotations["item_id"].unique().tolist() == ["item0001"]
    ANNOTATIONS.validate(result.annotations)


def test_annotator_id_is_the_email_local_part_else_user_id(inbox, ontology):
    export = [task(1, [answer("ann-01", [choice("day")], ann_id=1)]),
              task(2, [{"id": 2, "completed_by": 7, "lead_time": 3.0, "result": [choice("night")]}])]
    result = _intake([_write(inbox, "x.json", dumps(export))], inbox, ontology)
    assert sorted(result.annotations["annotator_id"]) == ["ann-01", "user-7"]


def test_annotation_ids_are_stable_across_runs_and_unique(inbox, ontology):
    path = _write(inbox, "ann-01.json", dumps(valid_export("ann-01")))
    first = _intake([path], inbox, ontology).annotations["annotation_id"]
    again = _intake([path], inbox, ontology).annotations["annotation_id"]
    assert first.tolist() == again.tolist()
    assert first.is_unique


def test_a_resubmitted_identical_file_is_recognized_and_not_counted_twice(inbox, ontology):
    content = dumps(valid_export("ann-01"))
    a, b = _write(inbox, "a.json", content), _write(inbox, "b.json", content)
    result = _intake([a, b], inbox, ontology)
    assert result.files["status"].tolist() == ["accepted", "duplicate_file"]
    assert result.n_accepted == 18 and result.n_received == 18 and result.reconciles
    digest = result.files["source_sha256"].iloc[0]
    later = _intake([b], inbox, ontology, already_ingested_sha256={digest})
    assert later.files["status"].tolist() == ["duplicate_file"] and later.n_received == 0


def test_a_truncated_vendor_file_is_quarantined_and_the_rest_of_the_batch_is_accepted(inbox, ontology):
    good = _write(inbox, "good.json", dumps(valid_export("ann-01")))
    content = dumps(valid_export("ann-02"))
    cut = _write(inbox, "cut.json", content[: len(content) - 40])
    result = _intake([cut, good], inbox, ontology)
    assert result.files.set_index("source_file").loc[f"{BATCH}/cut.json", "reason"] == "truncated_json"
    assert result.n_accepted == 18
    assert result.quarantine["reason"].tolist() == ["truncated_json"]
    assert "cut off" in result.quarantine["detail"].iloc[0]
    assert result.reconciles


@pytest.mark.parametrize("case", malformed_cases(), ids=lambda c: c.name)
def test_each_malformed_intake_case_ends_with_its_reason(inbox, ontology, case):
    path = _write(inbox, case.name, case.content)
    result = _intake([path], inbox, ontology)
    assert result.reconciles
    if case.stage == "intake":
        assert result.quarantine["reason"].value_counts().to_dict() == case.reasons
        assert result.n_accepted == case.valid_rows
    else:  # geometry and duplicates are the QA suite's job: intake lets them through
        assert result.n_quarantined == 0
    assert (result.quarantine["detail"].str.len() > 10).all()


def test_a_file_name_climbing_out_of_the_inbox_is_quarantined(inbox, ontology, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_bytes(dumps(valid_export("ann-01")))
    escaping = inbox / BATCH / ".." / ".." / ".." / ".." / "outside.json"
    assert escaping.exists()
    result = _intake([escaping, outside], inbox, ontology)
    assert result.files["reason"].tolist() == ["path_outside_inbox", "path_outside_inbox"]
    assert result.n_accepted == 0 and result.reconciles


def test_a_symlink_pointing_out_of_the_inbox_is_quarantined(inbox, ontology, tmp_path):
    target = tmp_path / "secret.json"
    target.write_bytes(dumps(valid_export("ann-01")))
    link = inbox / BATCH / "link.json"
    link.symlink_to(target)
    result = _intake([link], inbox, ontology)
    assert result.quarantine["reason"].tolist() == ["path_outside_inbox"]


def test_a_file_outside_any_batch_folder_or_missing_is_quarantined(inbox, ontology):
    loose = inbox / "loose.json"
    loose.write_bytes(dumps(valid_export("ann-01")))
    result = _intake([loose, inbox / BATCH / "missing.json"], inbox, ontology)
    assert result.quarantine["reason"].tolist() == ["no_batch_folder", "file_not_found"]
    assert result.reconciles


def test_rows_of_a_batch_without_handoff_tasks_are_unknown_tasks(inbox, ontology):
    folder = inbox / "other-batch"
    folder.mkdir()
    path = folder / "a.json"
    path.write_bytes(dumps(valid_export("ann-01", task_ids=(1,))))
    result = _intake([path], inbox, ontology)
    assert result.quarantine["reason"].unique().tolist() == ["unknown_task"]
    assert "other-batch" in result.quarantine["detail"].iloc[0]
    assert result.n_quarantined == 3


def test_malformed_entries_inside_a_file_are_quarantined_one_by_one(inbox, ontology):
    export = [
        "not a task",
        {"id": "abc", "annotations": []},
        task(1, [answer("ann-01", [choice("day"), {"type": "textarea", "value": {}},
                                   {"type": "rectanglelabels", "value": {"x": 1, "rectanglelabels": ["car", "bike"]}},
                                   box("car", 10, 10, 30, 30, rotation=15)], ann_id=1)]),
        task(2, [answer("ann-01", [], ann_id=2)]),
        task(3, [answer("ann-01", [choice("fog"), polygon("sign", [(1, 1), (5, 5)])], ann_id=3)]),
        task(4, [{"id": 4, "lead_time": 1.0, "result": [choice("rain")]}]),
        task(5, [answer("ann-01", [choice("day")], ann_id=5), answer("ann-01", [choice("night")], ann_id=6)]),
    ]
    result = _intake([_write(inbox, "mixed.json", dumps(export))], inbox, ontology)
    reasons = result.quarantine["reason"].value_counts().to_dict()
    assert reasons == {"malformed_task": 1, "invalid_task_id": 1, "unsupported_result_type": 1,
                       "malformed_label": 1, "rotated_box": 1, "empty_annotation": 1,
                       "too_few_points": 1, "missing_annotator": 1, "duplicate_answer": 1}
    assert sorted(result.annotations["label"]) == ["day", "day", "fog"]
    assert result.reconciles


def test_task_showing_another_image_than_it_was_sent_with_is_quarantined(inbox, ontology):
    export = valid_export("ann-01", task_ids=(1,))
    export[0]["data"]["image"] = "images/t00002.png"
    result = _intake([_write(inbox, "a.json", dumps(export))], inbox, ontology)
    assert result.quarantine["reason"].unique().tolist() == ["task_image_mismatch"]


def test_coco_boxes_polygons_and_scene_map_to_tasks_by_file_name(inbox, ontology):
    x, y, w, h = CAR
    coco = {"images": [{"id": 10, "file_name": "t00001.png", "width": W, "height": H},
                       {"id": 11, "file_name": "nope.png", "width": W, "height": H}],
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "sign"}, {"id": 3, "name": "day"}],
            "annotations": [
                {"id": 1, "image_id": 10, "category_id": 1, "bbox": [x, y, w, h], "annotator_id": "ann-01"},
                {"id": 2, "image_id": 10, "category_id": 2, "annotator_id": "ann-01",
                 "segmentation": [[c for p in SIGN for c in p]], "bbox": [200, 40, 40, 50]},
                {"id": 3, "image_id": 10, "category_id": 3, "annotator_id": "ann-01"},
                {"id": 4, "image_id": 11, "category_id": 1, "bbox": [x, y, w, h], "annotator_id": "ann-01"},
                {"id": 5, "image_id": 10, "category_id": 42, "bbox": [x, y, w, h]},
            ]}
    result = _intake([_write(inbox, "coco.json", dumps(coco))], inbox, ontology)
    assert result.files["format"].tolist() == ["coco"]
    a = result.annotations.set_index("kind")
    assert a.loc["box", ["x_min", "y_max"]].tolist() == pytest.approx([x, y + h])
    assert shapely.from_wkb(a.loc["polygon", "geometry_wkb"]).equals(shapely.Polygon(SIGN))
    assert a.loc["choice", "label"] == "day" and set(a["task_id"]) == {"1"}
    assert sorted(result.quarantine["reason"]) == ["unknown_category", "unknown_task"]
    assert result.reconciles


def test_the_simulated_vendor_exports_are_read_without_loss(tmp_path, ontology):
    from annotation_pipeline.sample_world.workforce import (
        AnnotatorProfile,
        simulate_answers,
        write_label_studio_exports,
    )

    tasks = make_tasks(n_tasks=20, gold_task_ids=())
    truth_rows = []
    for f in tasks["image_file"]:
        truth_rows.append({"image_file": f, "kind": "choice", "label": "day", "x_min": np.nan, "y_min": np.nan,
                           "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None})
        truth_rows.append({"image_file": f, "kind": "box", "label": "car", "x_min": 20.0, "y_min": 30.0,
                           "x_max": 90.0, "y_max": 80.0, "geometry_wkb": None})
        truth_rows.append({"image_file": f, "kind": "polygon", "label": "sign", "x_min": 200.0, "y_min": 40.0,
                           "x_max": 240.0, "y_max": 90.0, "geometry_wkb": shapely.to_wkb(shapely.Polygon(SIGN))})
    profiles = [AnnotatorProfile(f"ann-0{i}", 0.9, 1.0, 0.0, 30.0) for i in range(1, 4)]
    answers = simulate_answers(tasks, pd.DataFrame(truth_rows), profiles, 3, ["day", "night"], {"car": "box", "sign": "polygon"}, seed=1)
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    files = write_label_studio_exports(answers, tasks, profiles, inbox / BATCH, VENDOR)
    result = intake_vendor_returns(files, inbox, tasks, ontology, vendor=VENDOR)
    assert result.n_quarantined == 0, result.quarantine[["reason", "detail"]].drop_duplicates("reason").to_string()
    assert result.n_accepted == len(answers)
    boxes = result.annotations[result.annotations["kind"] == "box"].sort_values(["annotator_id", "task_id"])
    expected = answers[answers["kind"] == "box"].assign(
        annotator_id=lambda d: "ann-0" + (d["ann"] + 1).astype(str)).sort_values(["annotator_id", "task_id"])
    np.testing.assert_allclose(boxes[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float),
                               expected[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float), atol=1e-6)


def test_the_whole_corpus_reconciles_file_by_file(tmp_path, ontology):
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    files, _ = write_corpus(inbox)
    result = _intake(files, inbox, ontology, partition_date="2026-11-01")
    assert result.reconciles
    assert result.n_received == result.n_accepted + result.n_quarantined
    assert len(result.files) == len(files)
    QUARANTINE.validate(result.quarantine)
    assert (result.quarantine["partition_date"] == "2026-11-01").all()
