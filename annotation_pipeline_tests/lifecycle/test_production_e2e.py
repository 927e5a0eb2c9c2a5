"""The whole lifecycle on the production stack: Postgres storage, RabbitMQ, two Celery workers,
tables, vendor exchange and the DVC remote on a loopback S3 server."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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


def _succeeded_steps(instance, run_id: str) -> set[str]:
    return {e.dagster_event.step_key for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS"}


def test_the_lifecycle_runs_on_celery_workers_with_tables_and_release_on_s3(stack, instance):
    train_run, ok = launch(stack["env"], "train_prelabel_model")
    assert ok, f"training failed: run {train_run}; worker logs in {stack['base']}"
    run_id, ok = launch(stack["env"], "annotation_lifecycle", partition=DAY)
    assert ok, f"lifecycle failed: run {run_id}; worker logs in {stack['base']}"

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

