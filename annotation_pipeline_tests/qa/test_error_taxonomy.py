"""The QA error taxonomy: each gold object ends in exactly one outcome, for the right reason."""

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, GOLD_LABELS
from annotation_pipeline.qa.error_taxonomy import OUTCOMES, error_taxonomy, gold_error_outcomes

NAN = np.nan


def gold_frame() -> pd.DataFrame:
    return GOLD_LABELS.conform(pd.DataFrame([
        {"item_id": "g1", "kind": "choice", "label": "day"},
        {"item_id": "g1", "kind": "box", "label": "car", "x_min": 0, "y_min": 0, "x_max": 20, "y_max": 20},
        {"item_id": "g1", "kind": "box", "label": "person", "x_min": 100, "y_min": 100, "x_max": 120, "y_max": 140},
        {"item_id": "g1", "kind": "box", "label": "bike", "x_min": 200, "y_min": 0, "x_max": 240, "y_max": 30},
        {"item_id": "g1", "kind": "box", "label": "car", "x_min": 300, "y_min": 300, "x_max": 330, "y_max": 320},
    ]).assign(geometry_wkb=None))


def answer(annotator, kind, label, box=(NAN, NAN, NAN, NAN), n=[0]):
    n[0] += 1
    x0, y0, x1, y1 = box
    return {"annotation_id": f"a{n[0]}", "batch_id": "b", "task_id": "t1", "item_id": "g1",
            "annotator_id": annotator, "vendor": "v", "kind": kind, "label": label, "x_min": x0, "y_min": y0,
            "x_max": x1, "y_max": y1, "image_width": 640.0, "image_height": 480.0, "is_gold": True,
            "source_file": "f.json", "source_sha256": "s", "ontology_version": "1", "guidelines_version": "1",
            "model_version": "m", "geometry_wkb": None, "lead_time_s": 5.0}


def test_each_gold_object_gets_one_outcome_and_extras_are_counted():
    answers = ANNOTATIONS.conform(pd.DataFrame([
        answer("ann1", "choice", "night"),                             # scene: wrong class
        answer("ann1", "box", "car", (1, 1, 21, 21)),                   # car: correct
        answer("ann1", "box", "bike", (100, 100, 120, 140)),            # person drawn as bike: wrong class
        answer("ann1", "box", "bike", (210, 0, 270, 60)),               # bike, loosely: location error
        answer("ann1", "box", "car", (500, 400, 520, 420)),             # nothing there: extra
        # the car at 300,300 is missed
    ]))
    outcomes = gold_error_outcomes(answers, gold_frame())
    got = dict(zip(outcomes["label"] + "/" + outcomes["element"], outcomes["outcome"]))
    assert outcomes[outcomes["element"] == "scene"]["outcome"].tolist() == ["wrong_class"]
    objects = outcomes[(outcomes["element"] == "object") & (outcomes["outcome"] != "extra_object")]
    assert sorted(objects["outcome"]) == ["correct", "location_error", "missed", "wrong_class"]
    assert got["person/object"] == "wrong_class" and got["bike/object"] in ("location_error", "extra_object")
    table = error_taxonomy(outcomes)
    assert list(table.columns) == list(OUTCOMES)
    assert table.loc["ann1"].to_dict() == {"correct": 1, "wrong_class": 2, "location_error": 1, "missed": 1,
                                           "extra_object": 1}
    assert table.loc["all"].sum() == len(outcomes)


def test_answers_on_ordinary_tasks_are_not_judged():
    row = answer("ann2", "choice", "night")
    row["is_gold"] = False
    outcomes = gold_error_outcomes(ANNOTATIONS.conform(pd.DataFrame([row])), gold_frame())
    assert outcomes.empty and error_taxonomy(outcomes).empty
