"""The production profile's pieces against the real services every CI machine runs."""

from pathlib import Path

import pytest


def _pg_instance(home: Path):
    import dagster as dg

    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "storage:\n  postgres:\n    postgres_url: postgresql+psycopg2://postgres@127.0.0.1:5432/test\n")
    return dg.DagsterInstance.from_config(str(home))


@pytest.mark.postgres
def test_runs_and_materializations_are_stored_in_postgres(gold_root, tmp_path):
    """The production storage: a real run of the model-training job recorded in PostgreSQL."""
    import dagster as dg

    from annotation_pipeline.definitions import build_definitions

    instance = _pg_instance(tmp_path)
    # gold_root is shared read-only; train into a copy of it
    root = tmp_path / "root"
    root.mkdir()
    (root / "gold").symlink_to(gold_root / "gold")
    defs = build_definitions("local", root)
    result = defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance)
    assert result.success
    reloaded = _pg_instance(tmp_path)  # a second process would see the same through Postgres
    record = reloaded.get_run_record_by_id(result.run_id)
    assert record is not None and record.dagster_run.is_success
    event = reloaded.get_latest_materialization_event(dg.AssetKey("prelabel_model"))
    assert event is not None and event.asset_materialization.metadata["model_version"].value.startswith("prelabel-")
    instance.dispose(); reloaded.dispose()


@pytest.mark.parametrize("broker, backend", [
    pytest.param("pyamqp://guest:guest@127.0.0.1:5672//", "rpc://", marks=pytest.mark.rabbitmq, id="rabbitmq"),
    pytest.param("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1", marks=pytest.mark.redis, id="redis"),
])
def test_the_celery_broker_of_the_production_executor_is_reachable(broker, backend):
    from dagster_celery.make_app import make_app

    app = make_app({"broker": broker, "backend": backend})
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=2)
        assert conn.connected


def _drift_event(day: str, drifted: bool):
    import dagster as dg

    return dg.AssetMaterialization("drift_signals", partition=day,
                                   metadata={"drifted": drifted, "signals": {"label_psi": 0.5 if drifted else 0.01}})


@pytest.mark.postgres
def test_the_drift_sensor_keeps_its_place_across_a_postgres_restart(tmp_path):
    """Every connection of the instance is cut between ticks (what a Postgres restart does to its
    clients): the next tick goes on from the cursor, no campaign is requested twice, and a tick
    replayed from an older cursor asks with the same run key (the daemon runs a key once)."""
    import dagster as dg

    from annotation_pipeline.defs.monitoring import drift_campaign_sensor
    from annotation_pipeline_tests.lifecycle.production_stack import _psql, drop_database, fresh_database

    database = fresh_database()
    try:
        (tmp_path / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\nstorage:\n  postgres:\n"
            f"    postgres_url: postgresql+psycopg2://postgres@127.0.0.1:5432/{database}\n")
        instance = dg.DagsterInstance.from_config(str(tmp_path))
        instance.report_runless_asset_event(_drift_event("2026-11-20", drifted=True))
        first = drift_campaign_sensor(dg.build_sensor_context(instance=instance))
        assert [r.run_key for r in first.run_requests] == ["drift-2026-11-20"]

        _psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              f"WHERE datname = '{database}' AND pid <> pg_backend_pid()")
        instance.report_runless_asset_event(_drift_event("2026-11-21", drifted=False))
        instance.report_runless_asset_event(_drift_event("2026-11-22", drifted=True))
        second = drift_campaign_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert [r.run_key for r in second.run_requests] == ["drift-2026-11-22"]  # not 11-20 again

        _psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              f"WHERE datname = '{database}' AND pid <> pg_backend_pid()")
        quiet = drift_campaign_sensor(dg.build_sensor_context(instance=instance, cursor=second.cursor))
        assert isinstance(quiet, dg.SkipReason) and "no new drift_signals" in quiet.skip_message
        replayed = drift_campaign_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert [r.run_key for r in replayed.run_requests] == [r.run_key for r in second.run_requests]
        instance.dispose()
    finally:
        drop_database(database)


def test_the_production_executor_settings_are_validated_and_keep_the_broker_url_out_of_config():
    from annotation_pipeline.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ANNOTATION_PIPELINE_EXECUTOR='docker'"):
        load_settings({"ANNOTATION_PIPELINE_EXECUTOR": "docker"})
    with pytest.raises(SettingsError, match="ANNOTATION_PIPELINE_SIMULATE_VENDOR"):
        load_settings({"ANNOTATION_PIPELINE_SIMULATE_VENDOR": "maybe"})
    secret_url = "pyamqp://pipeline:s3cret@rabbit:5672//"
    settings = load_settings({"ANNOTATION_PIPELINE_CELERY_BROKER": secret_url})
    assert settings.celery_broker_config() == {"env": "ANNOTATION_PIPELINE_CELERY_BROKER"}
    assert "s3cret" not in repr(settings)
    default = load_settings({})
    assert default.celery_broker_config() == "pyamqp://guest:guest@127.0.0.1:5672//"
    assert default.production_executor == "celery" and default.s3_prefix == "pipeline"
