"""Postgres restarted while the drift sensor ticks: no cursor lost, no campaign doubled.

The instance's storage is a Postgres cluster of the test's own (``postgres_cluster``), so it
can really be stopped and started. The sensor is ticked by the sensor daemon's own iteration,
as ``dagster-daemon`` does; the run coordinator stops the server right after the tick queued
its campaign run and before the tick could store its cursor.
"""

from __future__ import annotations

import datetime
import logging

import dagster as dg
import pytest
import sqlalchemy.exc
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._time import get_current_datetime
from dagster_postgres.utils import DagsterPostgresException

from annotation_pipeline_tests.monitoring.postgres_cluster import (
    PostgresCluster,
    StopsPostgresAfterTheFirstRun,
    server_binaries,
)
from annotation_pipeline_tests.monitoring.test_drift import DRIFTED, QUIET, production  # noqa: F401 - fixture

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CAMPAIGN = f"drift-{DRIFTED}"


@pytest.fixture
def cluster():
    if server_binaries() is None:
        pytest.fail("this test needs the PostgreSQL server binaries (initdb, pg_ctl) under "
                    "/usr/lib/postgresql/<version>/bin: install the distribution's postgresql package",
                    pytrace=False)
    cluster = PostgresCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def _tick(context, at: datetime.datetime, *, server_goes_down: bool = False) -> None:
    """One pass of the sensor daemon over the code location's sensors, at time ``at``.

    While the server is down the pass ends in a storage error (the next sensor's state cannot
    be read); ``dagster-daemon`` logs it and passes again on its next iteration."""
    try:
        with freeze_time(at):
            list(execute_sensor_iteration(context, logging.getLogger("sensor-daemon"), None, None))
    except (sqlalchemy.exc.OperationalError, DagsterPostgresException):
        if not server_goes_down:
            raise


def _campaign_runs(instance) -> list:
    return instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: CAMPAIGN}))


def _sensor(context):
    location = next(iter(context.create_request_context().get_code_location_entries().values())).code_location
    return next(s for repo in location.get_repositories().values() for s in repo.get_sensors()
                if s.name == "drift_campaign_sensor")


def _cursor(instance, context) -> str | None:
    sensor = _sensor(context)
    state = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    return state.instigator_data.cursor if state and state.instigator_data else None


def test_a_postgres_restart_mid_tick_loses_no_cursor_and_doubles_no_campaign(production, cluster, tmp_path):  # noqa: F811
    from annotation_pipeline.definitions import build_definitions

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(cluster.instance_yaml(StopsPostgresAfterTheFirstRun.yaml(cluster)))
    defs = build_definitions("local", production)
    signals = defs.resolve_job_def("annotation_lifecycle").get_subset(asset_selection={dg.AssetKey("drift_signals")})
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="annotation_pipeline.definitions", attribute="defs"), location_name="annotation")
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as context:
        for day in (QUIET, DRIFTED):
            assert signals.execute_in_process(partition_key=day, instance=instance).success
        start = get_current_datetime()

        _tick(context, start, server_goes_down=True)  # queues the campaign's run; the server goes down before the cursor is stored
        assert not cluster.is_running()
        cluster.start()
        assert len(_campaign_runs(instance)) == 1
        assert _cursor(instance, context) is None  # the interrupted tick stored nothing more

        _tick(context, start + datetime.timedelta(minutes=6))  # after the sensor's 5-minute interval
        assert len(_campaign_runs(instance)) == 1, "the campaign was requested again"
        cursor = _cursor(instance, context)
        assert cursor is not None, "the cursor was lost"
        assert instance.get_dynamic_partitions("relabel_campaigns") == [CAMPAIGN]

        _tick(context, start + datetime.timedelta(minutes=12))
        assert len(_campaign_runs(instance)) == 1
        assert _cursor(instance, context) == cursor
        sensor = _sensor(context)
        latest = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)[0]
        assert latest.status == TickStatus.SKIPPED and "no new drift_signals" in latest.skip_reason
