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
