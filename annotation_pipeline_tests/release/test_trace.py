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


def _redaction_log() -> pd.DataFrame:
    """Item r's log as anonymization writes it: one row per field and detector, ``count`` values each;
    three faces (one row each, the same kind and count) and two phone numbers in two fields."""
    rows = [("face", "image", 1), ("face", "image", 1), ("face", "image", 1), ("phone", "caption", 1),
            ("phone", "notes", 1), ("exif", "image", 4), ("gps", "image", 4), ("gps", "location.gps", 1)]
    log = pd.DataFrame(rows, columns=["kind", "field", "count"]).assign(item_id="r", action="redact")
    return pd.concat([log, log.assign(item_id="other")], ignore_index=True)


def test_the_redaction_count_adds_up_to_what_is_listed_and_matches_the_anonymized_items_count(tmp_path):
    from annotation_pipeline.cli.lifecycle import _render_trace

    labels = pd.DataFrame({"item_id": ["r"], "kind": "choice", "label": "day", "confidence": [0.9],
                           "annotation_ids": [""], "partition_date": DAY, "n_annotators": 1, "n_assigned": 1,
                           "method": "ds"})
    provenance = pd.DataFrame({"item_id": [], "raw_path": [], "raw_partition_date": []})
    anonymized = pd.DataFrame({"item_id": ["r", "other"], "n_redactions": [16, 16]})
    tables = {"redaction_log": _redaction_log(), "anonymized_items": anonymized}
    out = trace_item(DataLayout(tmp_path), "r", "v0001", labels, provenance, lambda v: labels, ["v0001"],
                     read_table=lambda asset, partition: tables.get(asset))
    json.dumps(out, allow_nan=False)
    summary = out["redaction_summary"]
    assert summary["by_kind"] == {"exif": 4, "face": 3, "gps": 5, "phone": 2}
    assert summary["total"] == sum(summary["by_kind"].values()) == 14 and summary["log_entries"] == 8
    assert len(out["redactions"]) == 8  # every log row is still there for --json
    shown = _render_trace({**out, "problems_with_release_files": []})
    # the old line: "8: exif×4, face×1, gps×1, gps×4, phone×1" (a set of row strings, 11 of 14 listed)
    line = next(x for x in shown.splitlines() if x.startswith("  redactions"))
    assert line == ("  redactions   14 (values, metadata tags and image regions; 8 log entries): "
                    "exif 4, face 3, gps 5, phone 2; but anonymized_items records 16: the two disagree")
    listed = [int(part.rsplit(" ", 1)[1]) for part in line.split(": ", 1)[1].split(";")[0].split(", ")]
    assert sum(listed) == 14
    anonymized["n_redactions"] = 14  # the stage's own count agrees: nothing more to say
    agreed = trace_item(DataLayout(tmp_path), "r", "v0001", labels, provenance, lambda v: labels, ["v0001"],
                        read_table=lambda asset, partition: tables.get(asset))
    assert _render_trace({**agreed, "problems_with_release_files": []}).count("disagree") == 0
    empty = trace_item(DataLayout(tmp_path), "r", "v0001", labels, provenance, lambda v: labels, ["v0001"],
                       read_table=lambda asset, partition: None)
    assert empty["redaction_summary"]["total"] == 0
    assert "  redactions   none" in _render_trace({**empty, "problems_with_release_files": []})
