"""The code location explains itself in the UI and keeps the vendor side off raw data."""

import dagster as dg

from annotation_pipeline.definitions import build_definitions

GROUPS = {"ingestion", "anonymization", "prelabel", "vendor", "qa", "consensus", "release", "monitoring"}


def _graph():
    defs = build_definitions("local", "/tmp/annotation-pipeline-unused-root")
    return defs, defs.resolve_asset_graph()


def test_every_asset_has_a_stage_group_description_owner_and_kind():
    _, graph = _graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= {"raw_items", "anonymized_items", "redaction_log", "prelabels", "labeling_queue",
                    "vendor_batches", "returned_annotations", "quarantine", "annotator_scorecards",
                    "consensus_labels", "review_queue", "agreement_metrics", "dataset_release"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name in GROUPS, key
        assert node.description and len(node.description) > 60, key
        assert node.owners, key
        assert node.kinds, key


def test_batch_health_checks_block_and_row_checks_only_warn():
    _, graph = _graph()
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys}
    blocking = {n for n, spec in checks.items() if spec.blocking}
    assert blocking == {"accepted_rows_meet_contract", "batch_completeness", "gold_accuracy_overall", "quarantine_share"}
    assert {"rows_invalid_polygon", "rows_outside_image", "rows_label_not_in_ontology"} <= set(checks) - blocking


def test_the_vendor_side_reads_anonymized_items_never_raw_items():
    _, graph = _graph()
    for asset in ("vendor_batches", "returned_annotations", "prelabels", "labeling_queue"):
        upstream = {k.to_user_string() for k in graph.get(dg.AssetKey(asset)).parent_keys}
        assert "raw_items" not in upstream, asset
    assert "anonymized_items" in {k.to_user_string() for k in graph.get(dg.AssetKey("vendor_batches")).parent_keys}


def test_a_nightly_schedule_runs_the_daily_lifecycle():
    defs, _ = _graph()
    schedule = defs.resolve_schedule_def("annotation_lifecycle_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert defs.resolve_job_def("annotation_lifecycle").partitions_def is not None


def test_the_production_profile_swaps_resources_not_assets(monkeypatch):
    from annotation_pipeline.defs.resources import LocalFolderVendor, S3Vendor, build_resources

    monkeypatch.setenv("ANNOTATION_PIPELINE_S3_BUCKET", "annotation-program")
    production = build_resources("production", "/tmp/annotation-pipeline-unused-root")
    local = build_resources("local", "/tmp/annotation-pipeline-unused-root")
    assert isinstance(production["vendor"], S3Vendor) and isinstance(local["vendor"], LocalFolderVendor)
    assert production["releases"].remote_url == "s3://annotation-program/dvc"
    assert local["releases"].remote_url.endswith("/dvc-remote")
    assert set(production) == set(local)
    defs = build_definitions("production", "/tmp/annotation-pipeline-unused-root")
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == \
        {k.to_user_string() for k in _graph()[1].get_all_asset_keys()}


def test_an_unknown_profile_is_refused_with_the_variable_named(monkeypatch):
    import pytest

    from annotation_pipeline.settings import load_settings

    monkeypatch.setenv("ANNOTATION_PIPELINE_PROFILE", "staging")
    with pytest.raises(ValueError, match="ANNOTATION_PIPELINE_PROFILE='staging'"):
        load_settings()


def test_the_code_location_loads_as_dagster_dev_would_load_it():
    # what `dagster dev` does on import: every job, sensor and schedule resolved together
    # (a job named like an asset passes the tests above and still fails to load there)
    defs, _ = _graph()
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.sensors} >= {"drift_campaign_sensor", "record_failed_runs"}
