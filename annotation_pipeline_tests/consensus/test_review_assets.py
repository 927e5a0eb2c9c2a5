"""The review loop's assets through Dagster: tasks to the review folder, decisions back, counts in metadata."""

import json

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import ANONYMIZED_ITEMS, CONSENSUS_LABELS
from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.consensus import review_decisions, review_tasks
from annotation_pipeline.defs.resources import build_resources
from annotation_pipeline.defs.review_desk import LocalReviewFolder
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.consensus.test_review_loop import review_queue

DAY = "2026-11-20"


def _stand_ins(root):
    from PIL import Image

    layout = DataLayout(root)
    layout.anonymized(DAY).mkdir(parents=True, exist_ok=True)
    for item in ("i1", "i2", "i3", "i4"):
        Image.new("RGB", (64, 48), "gray").save(layout.anonymized(DAY) / f"{item}.png")
    items = ANONYMIZED_ITEMS.conform(pd.DataFrame({
        "item_id": ["i1", "i2", "i3", "i4"], "partition_date": DAY,
        "image_path": [f"anonymized/{DAY}/{i}.png" for i in ("i1", "i2", "i3", "i4")],
        "width": 64, "height": 48, "metadata_json": "{}", "caption": None, "n_redactions": 0}))
    frames = {"review_queue": review_queue(), "anonymized_items": items,
              "consensus_labels": CONSENSUS_LABELS.empty()}

    def stand_in(name):
        @dg.asset(name=name, partitions_def=daily_partitions)
        def upstream() -> pd.DataFrame:
            return frames[name]
        return upstream

    @dg.asset(name="gold_set", partitions_def=None)
    def gold_set() -> None:
        return None

    return [stand_in(n) for n in frames] + [gold_set]


def _metadata(result, asset):
    event = next(e for e in result.get_asset_materialization_events()
                 if e.materialization.asset_key == dg.AssetKey(asset))
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_review_tasks_go_out_and_a_reviewers_bad_rows_are_quarantined_with_counts_in_metadata(tmp_path, gold_root):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(gold_root / "gold", root / "gold")  # the gold set the hidden gold tasks come from
    resources = build_resources("local", root)
    resources["review_desk"] = LocalReviewFolder(root=str(root), simulate_reviewer=False)  # people answer
    assets = [*_stand_ins(root), review_tasks, review_decisions]
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.materialize(assets, partition_key=DAY, resources=resources, instance=instance)
        tasks = pd.read_parquet(DataLayout(root).table(["review_tasks"], DAY))
        assert _metadata(first, "review_tasks")["tasks"] == len(tasks) == 2 + 4  # two queued, four gold
        assert _metadata(first, "review_decisions")["received"] == 0  # nobody has answered yet
        returns = DataLayout(root).review_folder(DAY).returns
        task_id = tasks.loc[tasks["item_id"] == "i1", "review_task_id"].iloc[0]
        (returns / "rev-07.json").write_text(json.dumps([
            {"task_id": task_id, "reviewer_id": "rev-07", "decision": "override", "value": "night",
             "decided_at": "2026-11-21T08:00:00+01:00", "reason": "street lights on; call +49 30 1234567"},
            {"task_id": task_id, "reviewer_id": "rev-07", "decision": "maybe", "decided_at": "2026-11-21T08:01:00Z"},
        ]))
        (returns / "broken.json").write_text("[{")
        second = dg.materialize(assets, partition_key=DAY, resources=resources, instance=instance)
    meta = _metadata(second, "review_decisions")
    assert (meta["received"], meta["accepted"], meta["quarantined"], meta["reconciled"]) == (3, 1, 2, True)
    assert meta["quarantined_by_reason"] == {"unknown_decision": 1, "truncated_json": 1}
    assert meta["reason_redactions"] == 1
    decisions = pd.read_parquet(DataLayout(root).table(["review_decisions"], DAY))
    assert decisions["decided_at"].tolist() == ["2026-11-21T07:00:00Z"] and "1234567" not in decisions["reason"][0]
    quarantine = pd.read_parquet(DataLayout(root).quarantine_file("review", DAY))
    assert sorted(quarantine["reason"]) == ["truncated_json", "unknown_decision"]
