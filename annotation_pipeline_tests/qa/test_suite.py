"""Row-level QA suite, batch health and scorecards on returned annotations."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from annotation_pipeline.contracts import ANNOTATIONS, CONSENSUS_LABELS, QUARANTINE
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.qa.batch_health import batch_health, blocking_failures
from annotation_pipeline.qa.gold import gold_answer_outcomes
from annotation_pipeline.qa.outcomes import QAThresholds
from annotation_pipeline.qa.row_suite import build_row_suite, validate_annotations
from annotation_pipeline.qa.scorecards import annotator_scorecards
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    ANNOTATORS,
    BATCH,
    CAR,
    SIGN,
    VENDOR,
    answer,
    box,
    choice,
    dumps,
    gold_labels,
    make_tasks,
    polygon,
    task,
    valid_export,
    write_corpus,
)


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


def _ingest(tmp_path: Path, exports: dict[str, list], ontology, tasks=None):
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    (inbox / BATCH).mkdir(parents=True, exist_ok=True)
    files = []
    for name, export in exports.items():
        files.append(inbox / BATCH / name)
        files[-1].write_bytes(dumps(export))
    return intake_vendor_returns(files, inbox, make_tasks() if tasks is None else tasks, ontology, vendor=VENDOR)


def _three_good(**kw) -> dict[str, list]:
    return {f"{a}.json": valid_export(a, **kw) for a in ANNOTATORS}


def _reasons(validation) -> dict[str, int]:
    return validation.quarantined["reason"].value_counts().to_dict()


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, ontology):
    inbox = tmp_path_factory.mktemp("corpus") / "vendors" / VENDOR / "inbox"
    files, cases = write_corpus(inbox)
    intake = intake_vendor_returns(files, inbox, make_tasks(), ontology, vendor=VENDOR)
    return cases, intake, validate_annotations(intake.annotations, make_tasks(), ontology)


def test_the_malformed_corpus_ends_quarantined_with_reasons_and_every_valid_row_accepted(corpus_run):
    cases, intake, rows = corpus_run

    quarantine = pd.concat([intake.quarantine, rows.quarantined], ignore_index=True)
    for case in cases:
        mine = quarantine[quarantine["source_file"] == f"{BATCH}/{case.name}"]
        assert mine["reason"].value_counts().to_dict() == case.reasons, case.what
        accepted = (rows.accepted["source_file"] == f"{BATCH}/{case.name}").sum()
        assert accepted == case.valid_rows, case.what
    assert (rows.accepted["source_file"].isin([f"{BATCH}/{a}.json" for a in ANNOTATORS])).sum() == 54
    assert quarantine.loc[quarantine["reason"] == "path_outside_inbox", "source_file"].str.contains(r"\.\./").all()
    assert intake.n_duplicate_files == 1
    # totals reconcile across both stages
    assert intake.n_received == len(rows.accepted) + len(quarantine)
    assert quarantine["detail"].str.len().min() > 15
    QUARANTINE.validate(quarantine)
    ANNOTATIONS.validate(rows.accepted)


def test_great_expectations_counts_agree_with_the_quarantine_masks(corpus_run):
    _, _, rows = corpus_run
    for outcome in rows.expectations:
        assert outcome.unexpected_count == outcome.quarantined_count, outcome.reason
        assert outcome.success == (outcome.unexpected_count == 0), outcome.reason
    failed = {o.reason for o in rows.expectations if not o.success}
    assert {"invalid_polygon", "zero_area", "outside_image", "duplicate_answer",
            "missing_scene_choice", "label_not_in_ontology"} <= failed
    assert not rows.success


def test_a_clean_batch_passes_every_expectation(tmp_path, ontology):
    intake = _ingest(tmp_path, _three_good(), ontology)
    rows = validate_annotations(intake.annotations, make_tasks(), ontology)
    assert rows.success and rows.n_quarantined == 0 and rows.n_accepted == 54
    assert all(o.success and o.element_count == 54 for o in rows.expectations)


def test_geometry_rules_follow_the_ontology_limits_and_the_bounds_tolerance(tmp_path, ontology):
    results = [choice("day"),
               box("car", 10, 10, 100, 9, rid="wide"),         # 11.1:1 aspect, limit 10
               box("car", 10, 10, 3, 20, rid="thin"),          # 3 px side, minimum 4
               box("bike", 319.0 - 50, 10, 51.5, 20, rid="edge"),  # 0.5 px past the edge: tolerated
               box("person", 10, 10, 40, 4, rid="ok")]           # exactly 10:1 and 4 px: fine
    intake = _ingest(tmp_path, {"a.json": [task(1, [answer("ann-01", results)])]}, ontology)
    rows = validate_annotations(intake.annotations, make_tasks(), ontology)
    assert _reasons(rows) == {"aspect_ratio_too_large": 1, "below_min_size": 1}
    assert sorted(rows.accepted["label"]) == ["bike", "day", "person"]
    looser = copy.deepcopy(ontology.raw)
    looser["objects"]["car"].update(max_aspect_ratio=20, min_size_px=2)
    assert validate_annotations(intake.annotations, make_tasks(), looser).n_quarantined == 0
    strict = validate_annotations(intake.annotations, make_tasks(), ontology,
                                  thresholds=QAThresholds(bounds_tolerance_px=0.0))
    assert _reasons(strict)["outside_image"] == 1


def test_a_row_failing_several_rules_is_quarantined_once_under_the_first_and_names_the_others(tmp_path, ontology):
    results = [choice("day"),
               box("car", 10, 10, 100, 3, rid="thin"),          # 3 px side and 33:1
               box("car", 300, 10, 60, 3, rid="thin-outside"),  # also 40 px past the 320 px edge
               box("car", 10, 100, 90, 3, rid="thin-again")]    # the same two rules as "thin"
    intake = _ingest(tmp_path, {"a.json": [task(1, [answer("ann-01", results)])]}, ontology)
    rows = validate_annotations(intake.annotations, make_tasks(), ontology)
    assert _reasons(rows) == {"below_min_size": 2, "outside_image": 1}
    details = rows.quarantined.set_index("reason")["detail"]
    assert details["outside_image"].endswith("; also failed: below_min_size, aspect_ratio_too_large")
    assert details["below_min_size"].str.endswith("; also failed: aspect_ratio_too_large").all()
    assert details["below_min_size"].str.startswith("shortest side 3.0 px is below the 4 px minimum").all()
    counts = {o.reason: o.quarantined_count for o in rows.expectations}
    assert counts["aspect_ratio_too_large"] == 3 and counts["below_min_size"] == 3 and counts["outside_image"] == 1


def test_polygon_validity_and_area_match_shapely_object_by_object(tmp_path, ontology):
    shapes = {"square": SIGN, "bowtie": [(200, 40), (240, 90), (240, 40), (200, 90)],
              "spike": [(10, 10), (60, 10), (60, 60), (10, 60), (60, 60)],
              "flat": [(10, 10), (50, 10), (90, 10)]}
    results = [choice("day")] + [polygon("sign", pts, rid=name) for name, pts in shapes.items()]
    intake = _ingest(tmp_path, {"a.json": [task(1, [answer("ann-01", results)])]}, ontology)
    rows = validate_annotations(intake.annotations, make_tasks(), ontology)
    flagged = set(rows.quarantined["annotation_id"])
    polys = intake.annotations[intake.annotations["kind"] == "polygon"]
    for wkb, annotation_id in zip(polys["geometry_wkb"], polys["annotation_id"]):
        oracle = shapely.from_wkb(wkb)  # one object at a time: the oracle for the vectorized path
        expected_bad = (not oracle.is_valid) or oracle.area <= 0
        assert (annotation_id in flagged) == expected_bad
    assert rows.quarantined["detail"].str.contains("Self-intersection").any()


def test_duplicate_objects_and_negative_lead_times_are_quarantined(tmp_path, ontology):
    results = [choice("day"), box("car", *CAR, rid="a"), box("car", *CAR, rid="b")]
    export = [task(1, [answer("ann-01", results)]),
              task(2, [answer("ann-01", [choice("night")], ann_id=2, lead_time=-5.0)])]
    rows = validate_annotations(_ingest(tmp_path, {"a.json": export}, ontology).annotations, make_tasks(), ontology)
    assert _reasons(rows) == {"duplicate_object": 1, "negative_lead_time": 1}


def test_rows_without_required_fields_or_of_unknown_tasks_are_quarantined_not_raised(tmp_path, ontology):
    annotations = _ingest(tmp_path, _three_good(), ontology).annotations
    broken = annotations.copy()
    broken.loc[0, "annotator_id"] = pd.NA
    broken.loc[1, "task_id"] = "999"
    broken.loc[2, "kind"] = "keypoint"
    broken.loc[3, "image_width"] = 640.0
    rows = validate_annotations(broken, make_tasks(), ontology)
    assert _reasons(rows) == {"missing_required_field": 1, "unknown_task": 1, "unknown_kind": 1,
                              "image_size_mismatch": 1}
    assert "annotator_id" in rows.quarantined["detail"].iloc[0]


def test_the_suite_is_versioned_with_the_ontology(ontology):
    suite = build_row_suite(ontology)
    assert suite.name == "annotations_rows__street-scenes_v1_0_0"
    assert len(suite.expectations) == 16
    v2 = copy.deepcopy(ontology.raw)
    v2["version"] = "2.0.0"
    assert build_row_suite(v2).name.endswith("_v2_0_0")


def test_data_docs_are_built_and_linked_from_the_outcomes(tmp_path, ontology):
    intake = _ingest(tmp_path, {"a.json": valid_export("ann-01", task_ids=(1,))}, ontology)
    rows = validate_annotations(intake.annotations, make_tasks(), ontology, docs_dir=tmp_path / "docs",
                                run_name=BATCH)
    page = Path(rows.data_docs_url.removeprefix("file://"))
    assert page.is_file() and page.suffix == ".html"
    assert (tmp_path / "docs" / "index.html").is_file()  # the day's index of its validations
    assert "annotations_rows" in page.read_text()
    assert all(o.metadata["data_docs"] == rows.data_docs_url for o in rows.check_outcomes())


# ---------------------------------------------------------------- batch health

def _health(tmp_path, exports, ontology, row_qa: bool = True):
    """Intake, the row suite (skipped for batches that are clean row by row), batch health."""
    intake = _ingest(tmp_path, exports, ontology)
    accepted, quarantine = intake.annotations, intake.quarantine
    if row_qa:
        rows = validate_annotations(intake.annotations, make_tasks(), ontology)
        accepted, quarantine = rows.accepted, pd.concat([quarantine, rows.quarantined], ignore_index=True)
    outcomes = batch_health(accepted, quarantine, intake.n_received, make_tasks(), gold_labels(), ontology)
    return {o.name: o for o in outcomes}, accepted, quarantine


def test_a_complete_accurate_batch_is_healthy(tmp_path, ontology):
    checks, _, _ = _health(tmp_path, _three_good(), ontology, row_qa=False)
    assert all(o.passed for o in checks.values()), {n: o.metadata for n, o in checks.items() if not o.passed}
    assert checks["gold_accuracy_overall"].metadata["gold_accuracy"] == 1.0
    assert checks["batch_completeness"].metadata == {"n_tasks": 4, "n_complete": 4, "n_incomplete": 0, "data_docs": ""}
    assert {o.blocking for o in checks.values()} == {True, False}


def test_a_missing_annotator_makes_the_batch_incomplete_and_blocks_consensus(tmp_path, ontology):
    exports = _three_good()
    exports["ann-03.json"] = valid_export("ann-03", task_ids=(1, 2, 5, 6))  # skipped tasks 3 and 4
    checks, _, _ = _health(tmp_path, exports, ontology, row_qa=False)
    completeness = checks["batch_completeness"]
    assert not completeness.passed and completeness.blocking
    assert completeness.metadata["n_incomplete"] == 2
    assert sorted(e["task_id"] for e in completeness.failing_examples) == ["3", "4"]
    assert [o.name for o in blocking_failures(list(checks.values()))] == ["batch_completeness"]


def _careless(annotator: str) -> list:
    export = valid_export(annotator, shift=45.0, lead_time=2.0)  # boxes off target, 2 s per task
    for t in export:
        t["annotations"][0]["result"][0]["value"]["choices"] = ["fog"]
    return export


def test_a_careless_annotator_triggers_warnings_but_does_not_fail_the_batch(tmp_path, ontology):
    exports = _three_good()
    for annotator, export in exports.items():  # people take 25 to 40 s per task
        for i, t in enumerate(export):
            t["annotations"][0]["lead_time"] = 25.0 + 3 * i + len(annotator) % 3
    exports["ann-03.json"] = _careless("ann-03")
    checks, _, _ = _health(tmp_path, exports, ontology, row_qa=False)
    per_annotator = checks["annotator_gold_accuracy"]
    assert not per_annotator.passed and not per_annotator.blocking
    assert per_annotator.metadata["below"] == ["ann-03"]
    assert not checks["lead_time_outliers"].passed and not checks["lead_time_outliers"].blocking
    assert [e["annotator_id"] for e in checks["lead_time_outliers"].failing_examples] == ["ann-03"]
    overall = checks["gold_accuracy_overall"]
    # gold tasks 5, 6: ann-01/02 right on 3 of 3 elements each; ann-03 wrong scene, box and
    # polygon missed (2 gold objects, 2 extra objects): 0 of 5 -> pooled 12 / 22
    assert overall.metadata["pooled_gold_accuracy"] == pytest.approx(12 / 22)
    assert overall.metadata["gold_accuracy"] == pytest.approx(1.0)  # median annotator: 1, 1, 0
    assert overall.passed and overall.blocking


def test_a_batch_where_most_annotators_miss_gold_is_blocked(tmp_path, ontology):
    exports = _three_good()
    exports["ann-02.json"] = _careless("ann-02")
    exports["ann-03.json"] = _careless("ann-03")
    checks, _, _ = _health(tmp_path, exports, ontology, row_qa=False)
    overall = checks["gold_accuracy_overall"]
    assert overall.metadata["gold_accuracy"] == pytest.approx(0.0)  # median annotator: 1, 0, 0
    assert not overall.passed and overall.blocking
    assert "gold_accuracy_overall" in [o.name for o in blocking_failures(list(checks.values()))]


def test_too_many_quarantined_rows_block_consensus(tmp_path, ontology):
    exports = _three_good()
    exports["junk.json"] = [task(t, [answer("ann-04", [choice("day"), box("car", 0, 0, 0, 0)] * 3, ann_id=t)])
                            for t in range(1, 7)]
    checks, _, quarantine = _health(tmp_path, exports, ontology)
    share = checks["quarantine_share"]
    assert not share.passed and share.blocking
    assert share.metadata["quarantined"] == len(quarantine)
    assert share.metadata["by_reason"] == {"zero_area": 18, "duplicate_answer": 12}


def test_gold_matching_needs_the_same_class_and_iou_of_one_half(ontology):
    gold = gold_labels()
    x, y, w, h = CAR
    base = {"batch_id": BATCH, "task_id": "5", "item_id": "item0005", "is_gold": True, "geometry_wkb": None}
    # shifted by dx: IoU of two w×h boxes offset horizontally = (w-dx)/(w+dx)
    rows = [dict(base, annotator_id=f"a{dx}", annotation_id=f"id{dx}", kind="box", label="car", x_min=x + dx, y_min=y,
                 x_max=x + dx + w, y_max=y + h) for dx in (0.0, 19.0, 21.0)]
    rows.append(dict(base, annotator_id="wrong-class", annotation_id="idw", kind="box", label="bike", x_min=x, y_min=y,
                     x_max=x + w, y_max=y + h))
    accepted = pd.DataFrame(rows)
    out = gold_answer_outcomes(accepted, gold, iou_threshold=0.5)
    found = out[(out["element"] == "gold_object") & (out["label"] == "car")].set_index("annotator_id")
    oracle = {f"a{dx}": shapely.box(x, y, x + w, y + h).intersection(shapely.box(x + dx, y, x + dx + w, y + h)).area
              / shapely.box(x, y, x + w, y + h).union(shapely.box(x + dx, y, x + dx + w, y + h)).area
              for dx in (0.0, 19.0, 21.0)}
    for annotator, iou in oracle.items():
        assert found.loc[annotator, "iou"] == pytest.approx(iou)
        assert found.loc[annotator, "correct"] == (iou >= 0.5)
    assert not found.loc["wrong-class", "correct"]
    extra = out[out["element"] == "extra_object"]
    assert set(extra["annotator_id"]) == {"a21.0", "wrong-class"}


# ---------------------------------------------------------------- scorecards

def test_scorecards_report_gold_accuracy_rework_and_agreement_with_consensus(tmp_path, ontology):
    exports = _three_good()
    exports["ann-03.json"] = valid_export("ann-03")
    exports["ann-03.json"][0]["annotations"][0]["result"].append(box("car", 0, 0, 0, 0, rid="z"))
    exports["ann-03.json"][1]["annotations"][0]["result"][0]["value"]["choices"] = ["fog"]  # task 2 is night
    _, accepted, quarantine = _health(tmp_path, exports, ontology)
    consensus = CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": [f"item000{i}" for i in range(1, 7)], "kind": "choice",
        "label": ["day", "night", "fog", "rain", "day", "night"], "x_min": np.nan, "y_min": np.nan,
        "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None, "confidence": 1.0, "n_annotators": 3,
        "n_assigned": 3, "method": "mv", "annotation_ids": ""}))
    cards = annotator_scorecards(accepted, quarantine, make_tasks(), gold_labels(), consensus).set_index("annotator_id")
    assert cards.loc["ann-03", "n_answers"] == 19 and cards.loc["ann-03", "rework_rate"] == pytest.approx(1 / 19)
    assert cards.loc["ann-01", "rework_rate"] == 0.0 and cards.loc["ann-01", "gold_tasks"] == 2
    assert cards.loc["ann-03", "agreement_with_consensus"] == pytest.approx(5 / 6)
    assert cards.loc["ann-01", "agreement_with_consensus"] == 1.0
    assert cards.loc["ann-01", "gold_accuracy"] == 1.0 and cards.loc["ann-01", "median_lead_time_s"] == 30.0
    before = annotator_scorecards(accepted, quarantine, make_tasks(), gold_labels())
    assert before["agreement_with_consensus"].isna().all()


def test_duplicate_object_detection_agrees_with_pandas_duplicated():
    from annotation_pipeline.qa.check_columns import _duplicate_rows

    rng = np.random.default_rng(0)
    for _ in range(10):  # few distinct values: many exact duplicates, in any order
        key = rng.integers(0, 4, (3000, 6)).astype(float)
        np.testing.assert_array_equal(_duplicate_rows(key[:, 0].astype(np.int64), *key[:, 1:].T),
                                      pd.DataFrame(key).duplicated().to_numpy())
    key = rng.random((50, 6))
    key[[30, 41]] = key[3]
    key[44, 0] = -0.0
    key[45] = key[44]
    key[45, 0] = 0.0  # -0.0 and 0.0 are the same coordinate
    assert np.flatnonzero(_duplicate_rows(*key.T)).tolist() == [30, 41, 45]
