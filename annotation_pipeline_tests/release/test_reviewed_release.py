"""Review decisions confirm or override consensus in the next release, with provenance, and trace shows them."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from annotation_pipeline.cli.main import main
from annotation_pipeline.contracts import RELEASED_LABELS
from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.release import dataset_release
from annotation_pipeline.defs.resources import build_resources
from annotation_pipeline.release.reviewed import apply_review_decisions
from annotation_pipeline_tests.release.days import day_tables, review_decision, store_for

DAY = "2026-11-20"
TAG = DAY.replace("-", "")


def _decisions() -> pd.DataFrame:
    """item0: a scene overridden to fog; item1: a below-quorum car confirmed; item2: a bike rejected and
    its released car (audited) overridden to person; a superseded confirm on item0 and a gold decision,
    both of which change nothing."""
    answers = f"ann{TAG}1a"
    rows = [
        review_decision(DAY, f"item{TAG}0", "override", "fog", annotation_ids=f"ann{TAG}0a ann{TAG}0b",
                        reason="the horizon is gone", decided_at="2026-11-21T10:00:00Z"),
        review_decision(DAY, f"item{TAG}0", "confirm", annotation_ids=f"ann{TAG}0a", decided_at="2026-11-21T09:00:00Z",
                        decision_id="d-old"),
        review_decision(DAY, f"item{TAG}1", "confirm", kind="box", candidate="car", annotation_ids=answers,
                        box=(100.0, 100.0, 140.0, 130.0)),
        review_decision(DAY, f"item{TAG}2", "reject", kind="box", candidate="bike", box=(5.0, 5.0, 9.0, 9.0)),
        # an audited released label: item2's car (x 2..12) is a person
        review_decision(DAY, f"item{TAG}2", "override", "person", kind="box", candidate="car",
                        annotation_ids=f"ann{TAG}2a ann{TAG}2b ann{TAG}2c", box=(2.0, 1.0, 12.0, 11.0)),
        review_decision(DAY, "gold-item", "override", "rain", is_gold=True),
    ]
    frame = pd.concat(rows, ignore_index=True)
    frame.loc[frame["decision_id"] == "d-old", "superseded"] = True
    return frame


def test_decisions_confirm_override_or_keep_out_candidates_with_their_decision_id():
    t = day_tables(DAY)
    scene = t["consensus_labels"].iloc[:1].assign(kind="choice", label="day", x_min=np.nan, y_min=np.nan,
                                                  x_max=np.nan, y_max=np.nan)
    consensus = pd.concat([t["consensus_labels"], scene], ignore_index=True)
    labels = apply_review_decisions(consensus, _decisions(), t["returned_annotations"])
    RELEASED_LABELS.validate(labels)
    reviewed = labels[labels["label_source"] == "review"].set_index("review_decision_id")
    assert sorted(reviewed.index) == ["d-item202611200-override", "d-item202611201-confirm",
                                      "d-item202611202-override"]
    audited = reviewed.loc["d-item202611202-override"]
    assert (audited["label"], audited["x_min"], audited["n_annotators"]) == ("person", 2.0, 0)
    assert not ((labels["item_id"] == f"item{TAG}2") & (labels["label"] == "car")).any()  # replaced, not added
    override = reviewed.loc["d-item202611200-override"]
    assert (override["kind"], override["label"], override["method"]) == ("choice", "fog", "review")
    assert override["n_annotators"] == 0  # none of the answers behind it said fog
    confirmed = reviewed.loc["d-item202611201-confirm"]
    assert (confirmed["label"], confirmed["x_min"], confirmed["n_annotators"]) == ("car", 100.0, 1)
    # the reviewer has the last word on item0's scene: the consensus "day" is gone
    scenes = labels[(labels["item_id"] == f"item{TAG}0") & (labels["kind"] == "choice")]
    assert scenes["label"].tolist() == ["fog"]
    assert not (labels["label"] == "bike").any() and "gold-item" not in set(labels["item_id"])
    assert (labels.loc[labels["label_source"] == "consensus", "review_decision_id"].isna()).all()
    assert len(labels) == len(consensus) + 1  # item0's scene and item2's car replaced, item1's car added
    pd.testing.assert_frame_equal(labels, apply_review_decisions(consensus, _decisions(), t["returned_annotations"]))


def _stand_in(name: str, decisions: pd.DataFrame | None) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=daily_partitions)
    def upstream(context: dg.AssetExecutionContext) -> pd.DataFrame:
        if name == "review_decisions" and decisions is not None:
            return decisions
        return day_tables(context.partition_key)[name]

    return upstream


UPSTREAM = ["consensus_labels", "review_queue", "agreement_metrics", "annotator_scorecards",
            "returned_annotations", "raw_items", "anonymized_items", "review_decisions", "auto_accepted_labels"]


def _release(root: Path, decisions: pd.DataFrame | None) -> dict:
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([*(_stand_in(n, decisions) for n in UPSTREAM), dataset_release], partition_key=DAY,
                                resources=build_resources("local", root), instance=instance)
    event = next(e for e in result.get_asset_materialization_events()
                 if e.materialization.asset_key == dg.AssetKey("dataset_release"))
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_an_override_changes_the_next_release_and_trace_shows_who_when_what_why(tmp_path, capsys):
    root = tmp_path / "root"
    first = _release(root, None)  # the day released before any reviewer answered
    second = _release(root, _decisions())  # the reviewers' decisions came back: the day is released again
    again = _release(root, _decisions())
    assert (first["version"], second["version"], again["version"]) == ("v0001", "v0002", "v0002")
    assert second["new_release"] and not again["new_release"]  # idempotent on rerun
    assert second["reviewed_labels_of_the_day"] == 3
    store = store_for(root)
    before, after = store.read_table("v0001", "labels"), store.read_table("v0002", "labels")
    item = f"item{TAG}0"
    assert not ((before["item_id"] == item) & (before["label"] == "fog")).any()
    reviewed = after[(after["item_id"] == item) & (after["label_source"] == "review")]
    assert reviewed["label"].tolist() == ["fog"]
    assert reviewed["review_decision_id"].tolist() == ["d-item202611200-override"]
    assert set(after.loc[after["label_source"] == "consensus", "partition_date"]) == {DAY}
    report = json.loads((store.releases_dir / "v0002" / "quality_report.json").read_text())
    assert report["partition"]["reviewer_overrode"] == 2 and report["partition"]["labels_from_review"] == 3
    assert report["changes"]["changed"] >= 1  # item2's car became a person

    assert main(["trace", item, "--root", str(root), "--json"]) == 0
    trace = json.loads(capsys.readouterr().out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    decided = {d["decision_id"]: d for d in trace["review_decisions"]}
    assert set(decided) == {"d-item202611200-override", "d-old"}
    shown = decided["d-item202611200-override"]
    assert (shown["reviewer_id"], shown["decided_at"], shown["decision"], shown["final_label"], shown["reason"]) == \
        ("rev-01", "2026-11-21T10:00:00Z", "override", "fog", "the horizon is gone")
    assert decided["d-old"]["superseded"] is True
    assert any(lbl["label_source"] == "review" and lbl["review_decision_id"] == shown["decision_id"]
               for lbl in trace["labels"])
    assert main(["trace", item, "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "reviewed" in text and "rev-01" in text and "override day -> fog" in text and "the horizon is gone" in text
