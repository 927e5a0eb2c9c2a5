"""Check results belong to the day they judged: an empty day shows green for itself only."""

from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.qa import CHECK_SPECS, intake_vendor_returns_and_validate
from annotation_pipeline.defs.resources import DataRoot, LocalFolderVendor, PartitionedParquetIOManager
from annotation_pipeline.layout import DataLayout

BAD_DAY, EMPTY_DAY = "2026-11-18", "2026-11-19"
BATCH = f"simvendor-{BAD_DAY}-0123abcd"


def _tasks(day: str) -> pd.DataFrame:
    if day != BAD_DAY:
        return VENDOR_TASKS.empty()
    return VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": BATCH, "task_id": ["1", "2"], "item_id": ["i1", "i2"], "is_gold": False, "vendor": "simvendor",
        "image_file": ["t00001-0123abcd.png", "t00002-0123abcd.png"], "image_width": 64.0, "image_height": 48.0,
        "overlap": 1, "ontology_version": "1", "guidelines_version": "1", "model_version": "none"}))


@dg.asset(partitions_def=daily_partitions)
def vendor_batches(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """Stand-in for the handoff: two tasks on the bad day, none on the empty day."""
    return _tasks(context.partition_key)


def _run(day: str, root: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [vendor_batches, intake_vendor_returns_and_validate], partition_key=day, instance=instance,
        raise_on_error=False,
        resources={"data_root": DataRoot(path=str(root)), "io_manager": PartitionedParquetIOManager(base_path=str(root)),
                   "vendor": LocalFolderVendor(vendor="simvendor", root=str(root), simulate_workforce=False)})


def test_an_empty_day_does_not_show_green_over_the_previous_days_failures(tmp_path):
    root = tmp_path / "root"
    inbox = DataLayout(root).inbox("simvendor") / BATCH
    inbox.mkdir(parents=True)
    (inbox / "ann1.json").write_text('[{"id": 1, "annotations": [')  # cut off mid-file: quarantined whole
    instance = dg.DagsterInstance.ephemeral()

    bad = _run(BAD_DAY, root, instance)
    empty = _run(EMPTY_DAY, root, instance)

    assert not bad.success and empty.success  # the bad day is stopped by its blocking quarantine-share gate
    assert all(spec.partitions_def == daily_partitions for spec in CHECK_SPECS)
    keys = [spec.key for spec in CHECK_SPECS]
    storage = instance.event_log_storage

    def latest(day: str) -> dict[str, AssetCheckExecutionRecordStatus]:
        records = storage.get_latest_asset_check_execution_by_key(keys, partition_filter=PartitionKeyFilter(key=day))
        return {key.name: record.status for key, record in records.items()}

    bad_day, empty_day = latest(BAD_DAY), latest(EMPTY_DAY)
    failed, succeeded = AssetCheckExecutionRecordStatus.FAILED, AssetCheckExecutionRecordStatus.SUCCEEDED
    # the empty day passes the gates that judged the bad day's unreadable file; the bad day still fails them
    for gate in ("quarantine_share", "batch_completeness"):
        assert (bad_day[gate], empty_day[gate]) == (failed, succeeded), gate
    evaluations = {e.check_name: e for e in empty.get_asset_check_evaluations()}
    assert {e.partition for e in evaluations.values()} == {EMPTY_DAY}
