"""Through Dagster: the ``data_docs`` path a check result names still opens after the partition
is run again on changed vendor files (issue #22: it used to point into a deleted folder)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.qa import intake_vendor_returns_and_validate
from annotation_pipeline.defs.resources import DataRoot, LocalFolderVendor, PartitionedParquetIOManager
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.malformed.corpus import BATCH, dumps, make_tasks, valid_export

DAY = "2026-11-01"


@dg.asset(partitions_def=daily_partitions)
def vendor_batches() -> pd.DataFrame:
    """Stand-in for the handoff: the corpus batch of six tasks."""
    return make_tasks()


def _run(root: Path, instance: dg.DagsterInstance) -> dict[str, str]:
    """Materialize the intake step for DAY: {check or asset: its data_docs path}."""
    result = dg.materialize(
        [vendor_batches, intake_vendor_returns_and_validate], partition_key=DAY, instance=instance,
        raise_on_error=False,
        resources={"data_root": DataRoot(path=str(root)),
                   "io_manager": PartitionedParquetIOManager(base_path=str(root)),
                   "vendor": LocalFolderVendor(vendor="simvendor", root=str(root), simulate_workforce=False)})
    paths = {e.check_name: e.metadata["data_docs"].value for e in result.get_asset_check_evaluations()
             if "data_docs" in e.metadata}
    (returned,) = [m for m in result.get_asset_materialization_events()
                   if m.asset_key.to_user_string() == "returned_annotations"]
    metadata = returned.materialization.metadata
    paths["returned_annotations"] = metadata["data_docs"].value
    paths["index"] = metadata["data_docs_index"].value
    return paths


def test_check_results_of_an_earlier_run_still_name_pages_that_open(tmp_path):
    root = tmp_path / "root"
    inbox = DataLayout(root).inbox("simvendor") / BATCH
    inbox.mkdir(parents=True)
    for annotator in ("ann-01", "ann-02"):
        (inbox / f"{annotator}.json").write_bytes(dumps(valid_export(annotator)))
    instance = dg.DagsterInstance.ephemeral()

    first = _run(root, instance)
    (inbox / "ann-03.json").write_bytes(dumps(valid_export("ann-03")))  # a late file: run 2 judges more rows
    second = _run(root, instance)

    assert first["rows_label_not_in_ontology"] == first["returned_annotations"]
    assert first["returned_annotations"] != second["returned_annotations"]
    assert {"batch_completeness", "rows_label_not_in_ontology"} <= first.keys()
    for name, path in first.items():
        assert Path(path).is_file(), (name, path)  # run 1's evidence, after run 2
    index = Path(second["index"]).read_text()
    for path in (first["returned_annotations"], second["returned_annotations"]):
        assert str(Path(path).relative_to(Path(second["index"]).parent)) in index
