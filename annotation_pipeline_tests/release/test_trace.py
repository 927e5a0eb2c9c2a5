"""``trace_item``: every hop of one item, and only that item's rows, as strict JSON values."""

import json

import numpy as np
import pandas as pd

from annotation_pipeline.layout import DataLayout
from annotation_pipeline.release.trace import trace_item

DAY = "2026-11-20"


def _tables(with_batches: bool):
    tables = {
        "quarantine": pd.DataFrame({"stage": ["qa", "qa", "review"], "item_id": ["a", "b", "a"],
                                    "annotation_id": ["qa1", "qb1", None],
                                    "reason": ["below_min_size", "below_min_size", "unknown_decision"],
                                    "record_ref": ["r1", "r2", "decision 3"]}),
        "returned_annotations": pd.DataFrame({"item_id": ["a", "a", "b"], "annotation_id": ["x1", "x2", "y1"],
                                              "annotator_id": ["w1", "w2", "w1"], "kind": "choice",
                                              "label": ["day", "fog", "day"], "confidence": [np.nan, 1.0, 1.0]}),
        "review_queue": pd.DataFrame({"item_id": ["a"], "annotation_ids": ["x2"], "status": ["dismissed"],
                                      "reason": ["outvoted_by_merged_object"]}),
    }
    if with_batches:
        tables["vendor_batches"] = pd.DataFrame({"item_id": ["a", "b"], "batch_id": "b1", "task_id": ["1", "2"],
                                                 "vendor": "v", "is_gold": False})
    return lambda asset, partition: tables.get(asset)


def test_trace_keeps_to_the_item_even_without_the_days_batches_and_is_strict_json(tmp_path):
    labels = pd.DataFrame({"item_id": ["a", "b"], "kind": "choice", "label": "day", "confidence": [0.9, 0.8],
                           "annotation_ids": ["x1", "y1"], "partition_date": DAY, "n_annotators": 1,
                           "n_assigned": 2, "method": "ds"})
    provenance = pd.DataFrame({"item_id": ["a"], "raw_path": [f"raw/{DAY}/a.png"], "raw_partition_date": DAY})
    for with_batches in (True, False):
        out = trace_item(DataLayout(tmp_path), "a", "v0001", labels, provenance, lambda v: labels, ["v0001"],
                         read_table=_tables(with_batches))
        json.dumps(out, allow_nan=False)  # strict JSON: NaN became None
        assert {a.get("annotation_id") for a in out["answers"]} == {"x1", "x2", "qa1"}
        assert [d["reason"] for d in out["review_decisions_quarantined"]] == ["unknown_decision"]
        assert [a["why"] for a in out["answers_not_used"]] == ["dismissed for review: outvoted_by_merged_object"]
        assert out["raw_item"][0]["content_hash_matches"] is None  # the raw store is not here
        assert out["releases_containing_item"] == ["v0001"]
        assert len(out["batches"]) == (1 if with_batches else 0)


def test_trace_shows_a_machine_label_with_the_evidence_it_was_auto_accepted_on(tmp_path):
    from annotation_pipeline.cli.lifecycle import _render_trace

    evidence = "band 0.99-1.00: precision 0.991 on 112 held-out gold labels, model prelabel-abc"
    labels = pd.DataFrame({"item_id": ["m"], "kind": "choice", "label": "fog", "confidence": [0.991],
                           "annotation_ids": [""], "partition_date": DAY, "n_annotators": 0, "n_assigned": 0,
                           "method": "auto_accept", "label_source": "machine", "auto_accept_evidence": evidence})
    accepted = pd.DataFrame({"item_id": ["m"], "kind": "choice", "label": "fog", "score": [0.995],
                             "model_version": "prelabel-abc", "score_band": "0.99-1.00", "measured_precision": 0.991,
                             "n_gold": 112, "sent_for_check": False})
    provenance = pd.DataFrame({"item_id": [], "raw_path": [], "raw_partition_date": []})
    read = {"auto_accepted_labels": accepted}.get
    out = trace_item(DataLayout(tmp_path), "m", "v0002", labels, provenance, lambda v: labels, ["v0002"],
                     read_table=lambda asset, partition: read(asset))
    json.dumps(out, allow_nan=False)
    assert out["labels"][0]["label_source"] == "machine" and out["answers"] == []
    assert out["auto_accepted"][0]["n_gold"] == 112 and out["auto_accepted"][0]["sent_for_check"] is False
    shown = _render_trace({**out, "problems_with_release_files": []})
    assert f"choice fog: MACHINE label, auto-accepted ({evidence})" in shown
    assert "auto-accept  1 pre-labels earned it" in shown
