"""Edges of the nightly run, in real Dagster runs: a blocked batch, an empty day."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from annotation_pipeline.definitions import build_definitions
from annotation_pipeline.defs.resources import LocalFolderVendor
from annotation_pipeline.sample_world.sample_data import generate_gold_set, generate_partition
from annotation_pipeline.vendor.handoff import VendorBatch

pytestmark = pytest.mark.slow
DATE = "2026-11-19"


class VendorReturningGarbage(LocalFolderVendor):
    """A vendor whose export is cut off mid-file: every return file is unreadable."""

    def deliver(self, batch: VendorBatch) -> str:
        location = super().deliver(batch)
        inbox = Path(self.root) / "vendors" / self.vendor / "inbox" / batch.batch_id
        for export in inbox.glob("*.json"):
            export.write_bytes(export.read_bytes()[:200])  # truncated JSON
        return location


def test_a_failing_blocking_check_stops_consensus_for_the_partition(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", "x" * 40)
    root = tmp_path / "root"
    generate_partition(root, DATE, 6)
    generate_gold_set(root, n_items=20)
    vendor = VendorReturningGarbage(vendor="simvendor", root=str(root))
    defs = build_definitions("local", root, resources={"vendor": vendor})
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance).success

    result = defs.resolve_job_def("annotation_lifecycle").execute_in_process(
        partition_key=DATE, instance=instance, raise_on_error=False)

    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # each check names the Great Expectations Data Docs page of its validation (auditor's evidence)
    # and summarizes each expectation's result where the UI shows it
    for name in ("rows_label_not_in_ontology", "batch_completeness"):
        assert Path(checks[name].metadata["data_docs"].value).is_file(), name
        assert "| expectation " in checks[name].metadata["gx_results"].value, name
    assert not checks["quarantine_share"].passed
    assert checks["quarantine_share"].severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"returned_annotations", "quarantine"} <= materialized  # the evidence is kept...
    assert not materialized & {"consensus_labels", "review_queue", "dataset_release"}  # ...the gate holds
    assert not (root / "releases").exists()
    quarantined = root / "quarantine" / "intake" / f"{DATE}.parquet"
    reasons = set(pd.read_parquet(quarantined)["reason"])
    assert reasons and reasons <= {"truncated_json", "invalid_json"}


def test_a_day_with_no_uploads_runs_through_and_makes_no_empty_release(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", "x" * 40)
    root = tmp_path / "root"
    generate_gold_set(root, n_items=20)
    defs = build_definitions("local", root)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance).success

    result = defs.resolve_job_def("annotation_lifecycle").execute_in_process(partition_key=DATE, instance=instance)

    assert result.success
    meta = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert meta["raw_items"]["received"].value == 0 and meta["raw_items"]["reconciled"].value
    assert meta["dataset_release"]["new_release"].value is False
    assert not (root / "releases" / "index.jsonl").exists()


def test_late_uploads_go_out_as_a_second_batch_without_resending_the_first(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", "x" * 40)
    root = tmp_path / "root"
    generate_partition(root, DATE, 6)
    generate_gold_set(root, n_items=20)
    defs = build_definitions("local", root)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance).success
    job = defs.resolve_job_def("annotation_lifecycle")

    def run():
        result = job.execute_in_process(partition_key=DATE, instance=instance)
        meta = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
                for e in result.get_asset_materialization_events()}
        return meta, pd.read_parquet(root / "tables" / "vendor_batches" / f"{DATE}.parquet")

    first_meta, first = run()
    # Uploads that land late for the same day (another day's generated files, renamed).
    late = generate_partition(root, "2026-11-18", 3, seed=5)
    for f in sorted(late.landing_dir.glob("cam_*")):
        shutil.copy(f, root / "landing" / DATE / f"late_{f.name}")
    second_meta, second = run()

    assert second_meta["vendor_batches"]["new_batch"].value is True
    assert second["batch_id"].nunique() == 2
    new = second[second["batch_id"] == second_meta["vendor_batches"]["batch_id"].value]
    old_items = set(first.loc[~first["is_gold"], "item_id"])
    assert not old_items & set(new.loc[~new["is_gold"], "item_id"])  # nothing labeled twice
    assert len(new[~new["is_gold"]]) == 3
    outbox = root / "vendors" / "simvendor" / "outbox"
    assert len(list(outbox.iterdir())) == 2
    labels = pd.read_parquet(root / "releases" / "v0002" / "labels.parquet")
    assert old_items | set(new.loc[~new["is_gold"], "item_id"]) >= set(labels["item_id"])

    third_meta, third = run()  # and a plain rerun sends nothing
    assert third_meta["vendor_batches"]["new_batch"].value is False
    pd.testing.assert_frame_equal(third, second)
    assert third_meta["dataset_release"]["new_release"].value is False


@pytest.mark.parametrize("day, says", [("tomorrow", "the day has not ended yet"), ("2025-12-31", "partitions start"),
                                       ("22/11/2026", "expected YYYY-MM-DD")])
def test_the_demo_refuses_a_partition_that_does_not_exist_in_one_line(tmp_path, day, says):
    from datetime import datetime, timedelta, timezone

    if day == "tomorrow":
        day = (datetime.now(timezone.utc).date() + timedelta(days=1)).isoformat()
    # `python -m` as the README's users run it: the same one-line error, no traceback
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(tmp_path),
                           "--date", day], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and says in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_demo_whose_workforce_misses_gold_is_stopped_with_the_gates_numbers_and_no_traceback(tmp_path):
    import json
    import os
    import shutil

    from annotation_pipeline.settings import REPOSITORY_DATA_DIR

    data = tmp_path / "data"
    shutil.copytree(REPOSITORY_DATA_DIR, data)
    settings = json.loads((data / "sample_settings.json").read_text())
    for annotator in settings["vendor"]["annotators"]:  # a workforce that mostly misses gold
        annotator.update(accuracy=0.3, miss_rate=0.5, box_jitter_px=20.0)
    (data / "sample_settings.json").write_text(json.dumps(settings))
    proc = subprocess.run(
        [sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(tmp_path / "root"), "--images", "12",
         "--date", "2026-11-22"], capture_output=True, text=True, timeout=900,
        env={**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, "ANNOTATION_PIPELINE_DATA_DIR": str(data)})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    gate = [line for line in errors if "blocking check gold_accuracy_overall stopped the batch" in line]
    assert gate and "what to do:" in gate[0] and "interval" in gate[0], proc.stderr
