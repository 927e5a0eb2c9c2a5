"""The ``dataset_release`` step through Dagster: serialized, built only on a verified parent.

The upstream tables are stand-in assets of the same names (the release step reads them through
the Parquet IO manager as in a real run), so these runs exercise the real asset and resources.
"""


import hashlib
import json
import threading
from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.release import dataset_release
from annotation_pipeline.defs.resources import build_resources
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.release.days import day_tables, store_for

UPSTREAM = ["consensus_labels", "review_queue", "agreement_metrics", "annotator_scorecards",
            "returned_annotations", "raw_items", "anonymized_items", "review_decisions", "auto_accepted_labels"]


def _stand_in(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=daily_partitions)
    def upstream(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return day_tables(context.partition_key)[name]

    return upstream


STAND_INS = [_stand_in(name) for name in UPSTREAM]


def _release_run(root: Path, day: str) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:  # disposed in the thread that made it (SQLite)
        return dg.materialize([*STAND_INS, dataset_release], partition_key=day,
                              resources=build_resources("local", root), instance=instance, raise_on_error=False)


def _release_metadata(result: dg.ExecuteInProcessResult) -> dict:
    event = next(e for e in result.get_asset_materialization_events()
                 if e.materialization.asset_key == dg.AssetKey("dataset_release"))
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_release_step_is_in_the_release_pool():
    assert dataset_release.op.pool == "dataset_release"


def test_two_partitions_released_at_once_through_dagster_both_end_in_the_latest_release(tmp_path):
    root = tmp_path / "root"
    results, start = {}, threading.Barrier(2)

    def run(day):
        start.wait()
        results[day] = _release_run(root, day)

    threads = [threading.Thread(target=run, args=(day,)) for day in ("2026-11-20", "2026-11-21")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert all(r.success for r in results.values())
    versions = sorted(_release_metadata(r)["version"] for r in results.values())
    assert versions == ["v0001", "v0002"]
    store = store_for(root)
    latest = store.read_table(store.latest().version, "labels")
    assert sorted(latest["partition_date"].unique()) == ["2026-11-20", "2026-11-21"]
    metadata = _release_metadata(results["2026-11-21"])
    assert metadata["manifest_sha256"] in {r.manifest_sha256 for r in store.list_releases()}


def test_the_release_step_stops_with_a_clear_message_when_its_parent_was_tampered_with(tmp_path):
    root = tmp_path / "root"
    assert _release_run(root, "2026-11-20").success
    folder = DataLayout(root).releases / "v0001"
    folder.chmod(0o755)
    for name in ("quality_report.json", "manifest.json"):
        (folder / name).chmod(0o644)
    report = json.loads((folder / "quality_report.json").read_text())
    (folder / "quality_report.json").write_text(json.dumps({**report, "dataset": {"labels": 1_000_000}}))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["quality_report.json"] = hashlib.sha256(
        (folder / "quality_report.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))

    result = _release_run(root, "2026-11-21")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "dataset_release"
    message = failure.event_specific_data.error.message
    assert "the parent release v0001 is not what was published, so no release was built on it" in message
    assert "Traceback" not in (failure.event_specific_data.error.cause.message
                               if failure.event_specific_data.error.cause else "")
    assert [r.version for r in store_for(root).list_releases()] == ["v0001"]
