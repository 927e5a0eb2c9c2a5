"""The nightly schedule and the sensors that watch runs."""


import dagster as dg

from annotation_pipeline.audit import append_audit_event
from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.monitoring import relabel_campaign_job
from annotation_pipeline.defs.resources import DataRoot

lifecycle_job = dg.define_asset_job(
    # Everything on daily partitions; the model is retrained deliberately and campaigns run
    # on their own partitions (started by the drift sensor).
    "annotation_lifecycle",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("prelabel_model", "relabel_campaign"),
    partitions_def=daily_partitions,
    description="The day's partition end to end: ingestion to dataset release.",
)

train_prelabel_model_job = dg.define_asset_job(
    "train_prelabel_model", selection=dg.AssetSelection.assets("prelabel_model"),
    description="Retrain the pre-label model on the gold set (a deliberate step: nightly reruns reuse the model).",
)

# 02:00 UTC: the day has ended and late uploads have landed; the partition is yesterday's.
nightly_schedule = dg.build_schedule_from_partitioned_job(lifecycle_job, hour_of_day=2, minute_of_hour=0)


@dg.run_failure_sensor(monitored_jobs=[lifecycle_job, train_prelabel_model_job, relabel_campaign_job],
                       default_status=dg.DefaultSensorStatus.RUNNING)
def record_failed_runs(context: dg.RunFailureSensorContext, data_root: DataRoot) -> None:
    """Failed nightly runs and campaigns go to the audit log, so on-call sees them beside the releases.

    A run whose process was killed fails too: run monitoring (dagster.yaml) marks it FAILED once
    it outlives ``max_runtime_seconds``, and that failure reaches this sensor like any other.
    """
    append_audit_event(data_root.root, "run_failed", run_id=context.dagster_run.run_id,
                       job=context.dagster_run.job_name, partition=context.dagster_run.tags.get("dagster/partition"),
                       message=context.failure_event.message or "")


defs = dg.Definitions(jobs=[lifecycle_job, train_prelabel_model_job], schedules=[nightly_schedule], sensors=[record_failed_runs])
