"""The review loop: queued candidates become review tasks, reviewers' decisions come back hardened."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.consensus.review_decisions import decision_files, read_decisions, reviewer_accuracy
from annotation_pipeline.consensus.review_tasks import audit_sample, build_review_tasks, write_review_folder
from annotation_pipeline.contracts import GOLD_LABELS, QUARANTINE, REVIEW_DECISIONS, REVIEW_QUEUE, REVIEWER_ACCURACY
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.sample_world.reviewer import right_answers, simulate_decisions

DAY = "2026-11-20"
SCENES = ["day", "night", "fog", "rain"]


def review_queue() -> pd.DataFrame:
    """Two queued candidates (a scene and a box), one deferred, one dismissed."""
    return REVIEW_QUEUE.conform(pd.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4"], "kind": ["choice", "box", "choice", "box"],
        "label": ["day", "car", "fog", "person"],
        "x_min": [np.nan, 10.0, np.nan, 5.0], "y_min": [np.nan, 10.0, np.nan, 5.0],
        "x_max": [np.nan, 50.0, np.nan, 9.0], "y_max": [np.nan, 40.0, np.nan, 9.0],
        "confidence": [0.55, 0.4, 0.6, 0.1], "n_annotators": [2, 1, 2, 1], "n_assigned": 3,
        "reason": ["low_confidence", "below_quorum", "low_confidence", "unreliable_annotators_only"],
        "status": ["queued", "queued", "deferred", "dismissed"], "expected_gain": [0.45, 0.4, 0.4, 0.0],
        "annotation_ids": ["a1 a2 a3", "b1", "c1 c2 c3", "d1"],
    }))


def gold() -> pd.DataFrame:
    return GOLD_LABELS.conform(pd.DataFrame({
        "item_id": [f"g{k}" for k in range(6)], "kind": "choice", "label": ["day", "night", "fog", "rain", "day", "fog"],
        "x_min": np.nan, "y_min": np.nan, "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None}))


def tasks(n_gold: int = 4) -> pd.DataFrame:
    suffix = pd.Series(".png", index=["i1", "i2", "i3", "i4", *(f"g{k}" for k in range(6))])
    return build_review_tasks(review_queue(), gold(), suffix, DAY, scene_classes=SCENES, n_gold=n_gold)


def test_queued_candidates_become_tasks_with_hidden_gold_and_stable_ids():
    made = tasks()
    assert sorted(made.loc[~made["is_gold"], "item_id"]) == ["i1", "i2"]  # deferred and dismissed stay out
    assert made["is_gold"].sum() == 4 and made.loc[made["is_gold"], "gold_label"].notna().all()
    assert made["review_task_id"].is_unique and made["review_task_id"].str.fullmatch(r"rv-[0-9a-f]{12}").all()
    assert tasks().equals(made)  # a rerun names the same tasks the same
    gold_rows = made[made["is_gold"]]
    assert (gold_rows["label"] != gold_rows["gold_label"]).any()  # "confirm everything" cannot score well


def test_released_labels_of_items_that_lost_answers_to_quarantine_are_audited_first():
    labels = review_queue().drop(columns=["reason", "status", "expected_gain"]).assign(
        item_id=["k1", "k2", "k3", "k4"], confidence=[0.99, 0.95, 0.6, 0.7])
    quarantine = pd.DataFrame({"stage": ["qa", "ingestion"], "item_id": ["k1", "k4"], "reason": "x"})
    audit = audit_sample(labels, quarantine, 2)
    assert audit["item_id"].tolist() == ["k1", "k3"]  # k1 lost an answer; then the least confident
    assert audit["reason"].tolist() == ["audit_answers_quarantined", "audit_low_confidence"]
    made = build_review_tasks(review_queue(), gold(), pd.Series(".png", index=["i1", "i2", "k1", "k3"]), DAY,
                              scene_classes=SCENES, n_gold=0, audit=audit)
    assert sorted(made["reason"]) == ["audit_answers_quarantined", "audit_low_confidence", "below_quorum",
                                      "low_confidence"]
    assert build_review_tasks(review_queue().iloc[2:], gold(), pd.Series(dtype=str), DAY, scene_classes=SCENES,
                              n_gold=4).empty  # nothing to review: no gold either


def test_the_review_folder_is_a_label_studio_import_that_hides_gold_and_item_ids(tmp_path):
    from PIL import Image

    made = tasks()
    sources = []
    for item in made["item_id"].unique():
        path = tmp_path / f"{item}.png"
        Image.new("RGB", (100, 80), "gray").save(path)
        sources.append({"item_id": item, "path": str(path), "width": 100.0, "height": 80.0,
                        "is_gold": item.startswith("g")})
    folder = DataLayout(tmp_path / "root").review_folder(DAY)
    write_review_folder(made, pd.DataFrame(sources).set_index("item_id"), folder, load_ontology())
    text = folder.tasks_file.read_text()
    imported = json.loads(text)
    assert len(imported) == len(made) and folder.returns.is_dir()
    assert all((folder.path / t["data"]["image"]).is_file() for t in imported)
    assert "gold" not in text and not any(item in text for item in made["item_id"])
    box = next(t for t in imported if t["data"]["kind"] == "box")
    value = box["predictions"][0]["result"][0]["value"]
    assert value["rectanglelabels"] == ["car"] and value["x"] == pytest.approx(10.0)  # percent of 100 px
    before = folder.tasks_file.stat().st_mtime_ns
    write_review_folder(made, pd.DataFrame(sources).set_index("item_id"), folder, load_ontology())
    assert folder.tasks_file.stat().st_mtime_ns == before  # a rerun rewrites nothing


def _decision(task_id: str, decision: str, value=None, reviewer="rev-01", at="2026-11-21T09:00:00Z", reason=""):
    entry = {"task_id": task_id, "reviewer_id": reviewer, "decision": decision, "decided_at": at, "reason": reason}
    return entry | ({"value": value} if value is not None else {})


def test_a_decision_file_with_good_and_bad_rows_reconciles_and_names_each_problem(tmp_path):
    made = tasks()
    scene = made.loc[(made["item_id"] == "i1"), "review_task_id"].iloc[0]
    box = made.loc[(made["item_id"] == "i2"), "review_task_id"].iloc[0]
    returns = tmp_path / "returns"
    returns.mkdir()
    good = [_decision(scene, "override", "fog", reason="horizon gone; asked Dr. Weber, mail w@x.org"),
            _decision(box, "confirm")]
    bad = [
        "not an object",
        _decision("rv-000000000000", "confirm"),                    # unknown_task
        _decision(scene, "approve"),                               # unknown_decision
        _decision(scene, "override", "car"),                       # invalid_value: a box class for a scene
        _decision(scene, "override"),                              # invalid_value: no value
        _decision(box, "reject", "bike"),                          # unexpected_value
        _decision(scene, "confirm", at="yesterday"),               # invalid_timestamp
        _decision(scene, "confirm", reviewer=""),                  # missing_reviewer
        _decision(scene, "confirm", reason="x" * 5000),            # reason_too_long
        {**_decision(scene, "confirm"), "reviewer_id": 7},         # invalid_field
        _decision(box, "confirm"),                                 # duplicate_decision
    ]
    (returns / "rev-01.json").write_text(json.dumps(good + bad))
    (returns / "copy.json").write_text(json.dumps(good + bad))     # the same bytes: a duplicate file
    (returns / "truncated.json").write_text(json.dumps(good)[:-1])  # cut off before the last ]
    (returns / "object.json").write_text(json.dumps({"decisions": good}))
    os.symlink(returns / "rev-01.json", returns / "link.json")
    (returns / ".rev-02.json.tmp").write_text("[")               # still being written: not read yet

    files = decision_files(returns)
    intake = read_decisions(files, returns, made, load_ontology(), partition_date=DAY)
    counts = intake.counts()
    assert intake.reconciles
    assert counts == {"received": len(good) + len(bad) + 3, "accepted": 2, "quarantined": len(bad) + 3,
                      "files_received": 5, "files_accepted": 1, "files_quarantined": 3, "files_duplicate": 1}
    REVIEW_DECISIONS.validate(intake.decisions)
    QUARANTINE.validate(intake.quarantine)
    assert sorted(intake.quarantine["reason"]) == sorted([
        "not_an_object", "unknown_task", "unknown_decision", "invalid_value", "invalid_value", "unexpected_value",
        "invalid_timestamp", "missing_reviewer", "reason_too_long", "invalid_field", "duplicate_decision",
        "truncated_json", "unknown_format", "symlink"])
    assert (intake.quarantine["stage"] == "review").all() and (intake.quarantine["detail"] != "").all()
    override = intake.decisions.set_index("decision").loc["override"]
    assert override["final_label"] == "fog" and override["candidate_label"] == "day"
    assert "Weber" not in override["reason"] and "w@x.org" not in override["reason"]
    assert "horizon gone" in override["reason"] and intake.redactions >= 2
    assert override["decided_at"] == "2026-11-21T09:00:00Z" and override["reviewer_id"] == "rev-01"


def test_the_latest_decision_on_a_task_wins_and_gold_scores_the_reviewer(tmp_path):
    made = tasks()
    scene = made.loc[(made["item_id"] == "i1"), "review_task_id"].iloc[0]
    golds = made[made["is_gold"]]
    returns = tmp_path / "returns"
    returns.mkdir()
    rows = [_decision(scene, "confirm", at="2026-11-21T09:00:00Z"),
            _decision(scene, "override", "night", at="2026-11-21T10:00:00Z", reviewer="rev-02")]
    # rev-01 answers every gold task right, rev-02 confirms every gold candidate
    rows += [_decision(t.review_task_id, "confirm") if t.label == t.gold_label
             else _decision(t.review_task_id, "override", t.gold_label) for t in golds.itertuples()]
    rows += [_decision(t.review_task_id, "confirm", reviewer="rev-02") for t in golds.itertuples()]
    (returns / "all.json").write_text(json.dumps(rows))
    intake = read_decisions(decision_files(returns), returns, made, load_ontology(), partition_date=DAY)
    on_scene = intake.decisions[intake.decisions["review_task_id"] == scene]
    assert on_scene.loc[~on_scene["superseded"], "final_label"].tolist() == ["night"]
    accuracy = reviewer_accuracy(intake.decisions).set_index("reviewer_id")
    REVIEWER_ACCURACY.validate(accuracy.reset_index())
    n_right_candidates = int((golds["label"] == golds["gold_label"]).sum())
    assert accuracy.loc["rev-01", ["n_gold", "n_correct"]].tolist() == [4, 4]
    assert accuracy.loc["rev-01", "accuracy"] == 1.0
    assert accuracy.loc["rev-02", "n_correct"] == n_right_candidates
    assert accuracy.loc["rev-02", "accuracy"] == pytest.approx(n_right_candidates / 4)


def test_the_simulated_reviewer_answers_from_the_truth_with_its_accuracy():
    made = tasks(n_gold=6)
    truth = pd.concat([gold(), GOLD_LABELS.conform(pd.DataFrame({
        "item_id": ["i1", "i2"], "kind": ["choice", "box"], "label": ["fog", "bike"],
        "x_min": [np.nan, 11.0], "y_min": [np.nan, 9.0], "x_max": [np.nan, 49.0], "y_max": [np.nan, 41.0],
        "geometry_wkb": None}))], ignore_index=True)
    right = right_answers(made, truth).assign(item_id=made["item_id"]).set_index("item_id")
    assert right.loc["i1"].tolist() == ["override", "fog"] and right.loc["i2"].tolist() == ["override", "bike"]
    perfect = simulate_decisions(made, truth, SCENES, reviewer_id="r", accuracy=1.0, seed=1)
    careless = simulate_decisions(made, truth, SCENES, reviewer_id="r", accuracy=0.0, seed=1)
    assert [d["decision"] for d in perfect] == right_answers(made, truth)["decision"].tolist()
    assert all(p["decision"] != c["decision"] or p.get("value") != c.get("value") for p, c in zip(perfect, careless))


def test_a_day_without_review_tasks_or_decision_files_reconciles_at_zero(tmp_path):
    empty = build_review_tasks(review_queue().iloc[:0], gold(), pd.Series(dtype=str), DAY, scene_classes=SCENES,
                               n_gold=4)
    intake = read_decisions(decision_files(tmp_path / "no-returns-yet"), tmp_path, empty, load_ontology(),
                            partition_date=DAY)
    assert intake.reconciles and intake.counts()["received"] == 0 and intake.decisions.empty
    REVIEW_DECISIONS.validate(intake.decisions)
    REVIEWER_ACCURACY.validate(reviewer_accuracy(intake.decisions))
