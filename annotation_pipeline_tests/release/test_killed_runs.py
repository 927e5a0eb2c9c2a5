"""A killed run does not stay STARTED: run monitoring (dagster.yaml) fails it, and the failure
sensor writes it to the audit log beside the releases."""

import logging
import shutil
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from annotation_pipeline.audit import read_audit_events, verify_audit_chain
from annotation_pipeline.defs.automation import record_failed_runs
from annotation_pipeline.defs.resources import DataRoot

WORKTREE = Path(__file__).resolve().parents[2]


def test_both_instance_files_turn_on_run_monitoring_and_limit_the_release_pool():
    for name in ("dagster.yaml", "dagster.production.yaml"):
        config = yaml.safe_load((WORKTREE / name).read_text())
        assert config["run_monitoring"]["enabled"] is True, name
        assert config["run_monitoring"]["max_runtime_seconds"] > 0, name
        assert config["concurrency"]["pools"]["default_limit"] == 1, name


def test_a_killed_run_is_marked_failed_by_run_monitoring_and_recorded_by_the_failure_sensor(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(WORKTREE / "dagster.yaml", home / "dagster.yaml")  # the instance file we ship
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        # A run whose worker was killed: STARTED, and nothing will ever end it. Its tag shortens
        # the instance's max_runtime_seconds (3 h) to one second for the test.
        run = create_run_for_test(instance, job_name="annotation_lifecycle",
                                  tags={"dagster/max_runtime": "1", "dagster/partition": "2026-11-21"})
        instance.report_dagster_event(DagsterEvent(event_type_value=DagsterEventType.RUN_START.value,
                                                   job_name=run.job_name), run_id=run.run_id)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        time.sleep(1.2)
        # one pass of the daemon's run-monitoring loop over this run
        monitor_started_run(instance, None, instance.get_run_record_by_id(run.run_id), logging.getLogger(__name__))
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        failure = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)[-1].dagster_event

        root = tmp_path / "root"
        # DataRoot holds a nested table-store resource, so the context is opened as a context manager
        with dg.build_run_status_sensor_context(
                sensor_name="record_failed_runs", dagster_event=failure, dagster_instance=instance, dagster_run=failed,
                resources={"data_root": DataRoot(path=str(root))}) as status:
            record_failed_runs(status.for_run_failure())
    events = [e for e in read_audit_events(root) if e["event"] == "run_failed"]
    assert [(e["run_id"], e["partition"]) for e in events] == [(run.run_id, "2026-11-21")]
    assert "forcibly marked as failed" in events[0]["message"]
    assert verify_audit_chain(root) == []
