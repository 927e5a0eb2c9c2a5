"""The whole lifecycle on the production stack: Postgres storage, RabbitMQ, two Celery workers,
tables, vendor exchange and the DVC remote on a loopback S3 server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import boto3
import pytest

from annotation_pipeline_tests.lifecycle.production_stack import (
    BUCKET,
    Workers,
    drop_database,
    drop_vhost,
    fresh_database,
    fresh_vhost,
    launch,
    require_services,
    stack_env,
    step_workers,
    write_instance,
)

pytestmark = [pytest.mark.production_e2e, pytest.mark.slow]

DAY = "2026-11-21"
WORKERS = ["w1", "w2"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_services()
    from moto.server import ThreadedMotoServer

    from annotation_pipeline.sample_world.sample_data import generate_gold_set, generate_partition

    base = tmp_path_factory.mktemp("production-stack")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    database, vhost = fresh_database(), fresh_vhost()
    workers = None
    try:
        host, port = server.get_host_and_port()
        broker = f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
        home, root = base / "dagster_home", base / "root"
        write_instance(home, database)
        env = stack_env(dict(os.environ), root=root, home=home, s3_endpoint=f"http://{host}:{port}", broker=broker)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                     aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        generate_partition(root, DAY, 12, seed=3)
        generate_gold_set(root)
        config_yaml = base / "celery.yaml"
        config_yaml.write_text(f"execution:\n  config:\n    broker: '{broker}'\n    backend: 'rpc://'\n")
        workers = Workers(env=env, config_yaml=config_yaml, log_dir=base)
        for name in WORKERS:
            workers.start(name)
        workers.wait_ready(WORKERS)
        yield {"env": env, "home": home, "root": root, "workers": workers, "base": base}
    finally:
        if workers is not None:
            workers.stop_all()
        server.stop()
        drop_database(database)
        drop_vhost(vhost)


@pytest.fixture(scope="module")
def instance(stack):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(stack["home"])) as inst:
        yield inst


def _s3(stack):
    return boto3.client("s3", endpoint_url=stack["env"]["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                        aws_secret_access_key="test", region_name="us-east-1")


def _keys(stack, prefix: str) -> list[str]:
    pages = _s3(stack).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _failures(instance, run_id: str) -> str:
    """What went wrong in a run, for the assertion message (worker logs vanish with the tmp dir)."""
    lines = []
    for e in instance.all_logs(run_id):
        event = e.dagster_event
        if event is not None and (event.is_step_failure or event.event_type_value == "RUN_FAILURE"
                                  or (event.is_engine_event and event.engine_event_data.error)):
            error = getattr(event.event_specific_data, "error", None)
            lines.append(f"{event.step_key or 'run'}: {e.message} {error.to_string() if error else ''}"[:3000])
    return "\n".join(lines) or "(no failure events)"


def _succeeded_steps(instance, run_id: str) -> set[str]:
    return {e.dagster_event.step_key for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"}


@pytest.fixture(scope="module")
def train_run(stack):
    run_id, ok = launch(stack["env"], "train_prelabel_model")
    assert ok, f"training failed: run {run_id}; worker logs in {stack['base']}"
    return run_id


def test_the_lifecycle_runs_on_celery_workers_with_tables_and_release_on_s3(stack, instance, train_run):
    run_id, ok = launch(stack["env"], "annotation_lifecycle", partition=DAY)
    assert ok, f"lifecycle failed: run {run_id}:\n{_failures(instance, run_id)}"

    # every step ran in a Celery worker of ours, none in the launching process
    placed = step_workers(instance, run_id)
    steps = _succeeded_steps(instance, run_id)
    assert steps and steps <= set(placed), f"steps not on a worker: {steps - set(placed)}"
    assert {host.split("@")[0] for host in placed.values()} <= set(WORKERS)
    # two workers serve the queue: each took steps (the day's graph has parallel branches)
    hosts = {h.split("@")[0] for run in (train_run, run_id) for h in step_workers(instance, run).values()}
    assert hosts == set(WORKERS), f"steps ran on {sorted(hosts)} only"

    # tables in the bucket under their partition keys, none on the local disk
    tables = _keys(stack, "pipeline/tables/")
    for asset in ["raw_items", "anonymized_items", "prelabels", "labeling_queue", "vendor_batches",
                  "returned_annotations", "quarantine", "consensus_labels", "agreement_metrics",
                  "annotator_scorecards", "drift_signals"]:
        assert f"pipeline/tables/{asset}/{DAY}.parquet" in tables, f"{asset} not in the bucket: {tables}"
    assert not (stack["root"] / "tables").exists() and not (stack["root"] / "quarantine").exists()

    # the vendor exchange went through the bucket, the release was pushed to the S3 DVC remote
    assert _keys(stack, "vendors/vendor/outbox/") and _keys(stack, "vendors/vendor/inbox/")
    release = instance.get_latest_materialization_event(
        __import__("dagster").AssetKey("dataset_release")).asset_materialization.metadata
    assert release["dvc_remote"].value == f"s3://{BUCKET}/dvc" and release["labels"].value > 0
    assert len(_keys(stack, "dvc/")) >= 3



def _read_table(stack, key: str):
    import io

    import pandas as pd

    return pd.read_parquet(io.BytesIO(_s3(stack).get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def _wait_for_step_start(instance, launcher, step_key: str, timeout_s: float = 600, day: str = ""):
    """(run id, pid of the worker process running ``step_key``) as soon as the step starts."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise AssertionError(f"the run ended before {step_key} started: {launcher.stderr.read()[-3000:]}")
        for record in instance.get_run_records(dg.RunsFilter(job_name="annotation_lifecycle",
                                                             tags={"dagster/partition": day or FAULT_DAY})):
            for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
                if entry.dagster_event.step_key == step_key:
                    return record.dagster_run.run_id, entry.dagster_event.pid
        time.sleep(0.2)
    raise TimeoutError(f"{step_key} did not start within {timeout_s:.0f}s")


FAULT_DAY = "2026-11-22"
KILLED_STEP = "intake_vendor_returns_and_validate"


def test_a_worker_killed_mid_step_fails_the_run_and_reexecution_completes_it_without_duplicates(
        stack, instance, train_run):
    """The process running a step is SIGKILLed (the OOM killer, a lost node): the run fails
    naming the lost worker; re-executing from failure finishes the day with every row once."""
    from annotation_pipeline.sample_world.sample_data import generate_partition
    from annotation_pipeline_tests.lifecycle.production_stack import LAUNCH_SCRIPT, REPO

    generate_partition(stack["root"], FAULT_DAY, 10, seed=5)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCH_SCRIPT, FAULT_DAY, "", "annotation_lifecycle"],
                                env=stack["env"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id, pid = _wait_for_step_start(instance, launcher, KILLED_STEP)
        os.kill(pid, signal.SIGKILL)  # a pool process of one of our workers, mid-step
        launcher.wait(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    failed = instance.get_run_by_id(run_id)
    assert failed.status.value == "FAILURE"
    assert KILLED_STEP not in _succeeded_steps(instance, run_id)
    # the Celery executor reports the lost task (WorkerLostError) in the run's failure
    messages = " ".join(f"{e.message} {e.dagster_event.event_specific_data if e.dagster_event else ''}"
                        for e in instance.all_logs(run_id))
    assert "WorkerLostError" in messages or "Worker exited prematurely" in messages, messages[-2000:]

    retry_id, ok = launch(stack["env"], "annotation_lifecycle", partition=FAULT_DAY, from_failure_of=run_id)
    assert ok, f"re-execution {retry_id} failed:\n{_failures(instance, retry_id)}"
    assert KILLED_STEP in _succeeded_steps(instance, retry_id)
    assert "raw_items" not in _succeeded_steps(instance, retry_id)  # done steps are not redone

    returned = _read_table(stack, f"pipeline/tables/returned_annotations/{FAULT_DAY}.parquet")
    assert len(returned) and not returned["annotation_id"].duplicated().any()
    tasks = _read_table(stack, f"pipeline/tables/vendor_batches/{FAULT_DAY}.parquet")
    assert tasks["batch_id"].nunique() == 1 and not tasks.duplicated(["batch_id", "task_id"]).any()
    outbox = {k.split("/")[3] for k in _keys(stack, "vendors/vendor/outbox/") if FAULT_DAY in k}
    assert outbox == set(tasks["batch_id"])  # the batch was delivered once, not again by the retry
    labels = _read_table(stack, f"pipeline/tables/consensus_labels/{FAULT_DAY}.parquet")
    assert len(labels) and not labels.drop(columns=["geometry_wkb"]).duplicated().any()


WHOLE_NODE_DAY = "2026-11-23"


def test_a_whole_worker_lost_leaves_the_run_to_run_monitoring_and_reexecution_completes_it(stack, instance, train_run):
    """The worker running a step dies whole (main process and pool child: a lost node) and so
    does the process coordinating the run. Nothing reports the step's end: the run stays STARTED
    until run monitoring's pass (the daemon's, as dagster.yaml turns it on) fails it for its
    runtime; re-execution from failure on the surviving worker finishes the day, every row once."""
    import logging

    import dagster as dg
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    from annotation_pipeline.sample_world.sample_data import generate_partition
    from annotation_pipeline_tests.lifecycle.production_stack import LAUNCH_SCRIPT, REPO

    generate_partition(stack["root"], WHOLE_NODE_DAY, 10, seed=7)
    # the instance's max_runtime_seconds (3 h) shortened for this run by its tag, as in test_killed_runs
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCH_SCRIPT, WHOLE_NODE_DAY, "", "annotation_lifecycle",
                                 '{"dagster/max_runtime": "5"}'],
                                env=stack["env"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = stack["workers"]
    try:
        run_id, pid = _wait_for_step_start(instance, launcher, KILLED_STEP, day=WHOLE_NODE_DAY)
        lost = next(name for name, proc in workers.procs.items() if os.getpgid(pid) == proc.pid)
        workers.kill(lost)                     # the worker's whole process group, SIGKILL
        time.sleep(5)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nobody noticed
        monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), logging.getLogger(__name__))
    finally:
        launcher.kill()                        # the run's coordinator was on the lost node too
        launcher.wait(timeout=60)
    failed = instance.get_run_by_id(run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert any("forcibly marked as failed" in (e.message or "") for e in instance.all_logs(run_id))
    assert KILLED_STEP not in _succeeded_steps(instance, run_id)

    retry_id, ok = launch(stack["env"], "annotation_lifecycle", partition=WHOLE_NODE_DAY, from_failure_of=run_id)
    assert ok, f"re-execution {retry_id} failed:\n{_failures(instance, retry_id)}"
    assert KILLED_STEP in _succeeded_steps(instance, retry_id)
    assert {h.split("@")[0] for h in step_workers(instance, retry_id).values()} == set(workers.procs)
    returned = _read_table(stack, f"pipeline/tables/returned_annotations/{WHOLE_NODE_DAY}.parquet")
    assert len(returned) and not returned["annotation_id"].duplicated().any()
    labels = _read_table(stack, f"pipeline/tables/consensus_labels/{WHOLE_NODE_DAY}.parquet")
    assert len(labels) and not labels.drop(columns=["geometry_wkb"]).duplicated().any()
