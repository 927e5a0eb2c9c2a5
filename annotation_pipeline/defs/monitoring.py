"""Monitoring wiring: production drift -> sensor -> relabel campaign -> labeling_queue.

``drift_signals`` runs with the day's partition (it is part of the nightly job). The sensor
reads each new materialization of it and, for a drifted day, adds a ``relabel_campaigns``
partition and asks for the campaign run. The campaign lands the chosen production images in
the ingestion landing folder; ``labeling_queue`` puts them first when they come through.
"""


from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import DRIFT_SIGNALS, PREDICTION_LOG, RELABEL_CAMPAIGN, ContractError
from annotation_pipeline.defs.common import (
    OWNERS,
    contract_metadata,
    counts_metadata,
    daily_partitions,
    table_metadata,
    ui_metadata,
)
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.monitoring.drift import (
    assess_day,
    campaign_id_for,
    run_campaign,
    summary,
    write_log_quarantine,
)
from annotation_pipeline.plots import markdown_image, share_comparison

ML_OWNERS = ["team:ml-platform"]
# Paths as the descriptions in the UI show them, relative to the data root.
_SHOWN = DataLayout(Path("ROOT"), anchored=False)

production_predictions = dg.AssetSpec(
    "production_predictions", group_name="monitoring", owners=ML_OWNERS, kinds={"parquet", "csv"},
    metadata=contract_metadata(PREDICTION_LOG),
    description=f"What the production model predicted, logged by the serving team: "
                f"`{_SHOWN.predictions('<date>')}/*.parquet|csv` per day and, per model version, its predictions on "
                f"its validation set in `{_SHOWN.reference}/<model_version>.parquet` (the distribution it was "
                "accepted on). Read-only for this pipeline.",
)

relabel_campaigns = dg.DynamicPartitionsDefinition(name="relabel_campaigns")


@dg.asset(
    group_name="monitoring", partitions_def=daily_partitions, owners=OWNERS + ML_OWNERS,
    kinds={"scipy", "parquet"}, deps=[production_predictions],
    metadata=contract_metadata(DRIFT_SIGNALS),
    check_specs=[dg.AssetCheckSpec("predictions_match_reference", asset="drift_signals", blocking=False,
                                   description="the day's predicted-label shares (PSI) and confidences (KS) "
                                               "stay close to the model's reference predictions")],
    description="The day's production predictions against the model's reference predictions: population "
                "stability of the predicted labels and a Kolmogorov-Smirnov test of the confidences, per "
                "model version. A drifted day starts a relabel campaign (sensor `drift_campaign_sensor`).\n\n"
                + DRIFT_SIGNALS.markdown(),
)
def drift_signals(context: dg.AssetExecutionContext, data_root: DataRoot):
    date = context.partition_key
    logs, assessment = assess_day(data_root.root, date)
    write_log_quarantine(data_root.root, date, logs.quarantine)
    facts = summary(assessment)
    charts = {f"chart_{version}": dg.MetadataValue.md(markdown_image(share_comparison(shares), f"label shares {version}"))
              for version, shares in assessment.class_shares.groupby("model_version")}
    if logs.n_files == 0:
        context.log.info(f"{data_root.layout.predictions(date)}/ holds no prediction log: nothing to judge")
    yield dg.Output(assessment.signals, metadata=ui_metadata({
        **counts_metadata(logs.n_received, logs.n_accepted, len(logs.quarantine)),
        "log_files": logs.n_files,
        "drifted": facts["drifted"],
        "signals": dg.MetadataValue.json(facts["signals"]),
        "drifted_labels": dg.MetadataValue.json(facts["drifted_labels"]),
        "not_judged": dg.MetadataValue.json(facts["notes"]),
        "quarantine_reasons": dg.MetadataValue.json(logs.quarantine["reason"].value_counts().to_dict()),
        **charts,
        **table_metadata(assessment.signals, DRIFT_SIGNALS),
    }, data_root.root))
    yield dg.AssetCheckResult(
        check_name="predictions_match_reference", passed=not assessment.drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"signals": dg.MetadataValue.json(facts["signals"]),
                  "drifted_labels": dg.MetadataValue.json(facts["drifted_labels"]),
                  "not_judged": dg.MetadataValue.json(facts["notes"])},
    )


class CampaignConfig(dg.Config):
    budget: int = 100  # production images a campaign sends to labeling (vendor money)


@dg.asset(
    group_name="monitoring", partitions_def=relabel_campaigns, owners=OWNERS + ML_OWNERS, kinds={"python", "parquet"},
    metadata=contract_metadata(RELABEL_CAMPAIGN),
    deps=[dg.AssetDep("drift_signals", partition_mapping=dg.AllPartitionMapping())],
    description="A relabel campaign for one drifted day (partition `drift-<day>`): the day's production "
                "images predicted as a class whose share grew, then the least confident, up to the budget, "
                "copied into `landing/<day after>/` for the nightly run; `labeling_queue` labels them first. "
                f"The manifest and the drift evidence are kept in `{_SHOWN.campaigns}/<campaign>/`.\n\n"
                + RELABEL_CAMPAIGN.markdown(),
)
def relabel_campaign(context: dg.AssetExecutionContext, config: CampaignConfig,
                     data_root: DataRoot) -> dg.Output[pd.DataFrame]:
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    try:
        campaign = run_campaign(data_root.root, context.partition_key, config.budget, today)
    except (ContractError, ValueError) as exc:
        raise dg.Failure(str(exc)) from None
    if len(campaign.quarantine):
        context.log.warning(f"{len(campaign.quarantine)} selected image(s) could not be landed: "
                            + "; ".join(campaign.quarantine["detail"].head(3)))
    return dg.Output(campaign.items, metadata=ui_metadata({
        **counts_metadata(len(campaign.items) + len(campaign.quarantine), len(campaign.items), len(campaign.quarantine)),
        "candidates": campaign.n_candidates, "budget": config.budget,
        "landing_folder": dg.MetadataValue.path(str(campaign.landing_dir)),
        "manifest": dg.MetadataValue.path(str(campaign.manifest_path)),
        "by_reason": dg.MetadataValue.json(campaign.items["reason"].value_counts().to_dict()),
        **table_metadata(campaign.items, RELABEL_CAMPAIGN),
    }, data_root.root))


relabel_campaign_job = dg.define_asset_job(
    "run_relabel_campaign", selection=dg.AssetSelection.assets(relabel_campaign), partitions_def=relabel_campaigns,
    description="Land a drifted day's most useful production images for labeling.",
)


@dg.sensor(job=relabel_campaign_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def drift_campaign_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Each new `drift_signals` materialization: a drifted day starts its campaign (once: the run
    key is the campaign id), a quiet day is reported as the skip reason with its numbers."""
    found = context.instance.fetch_materializations(dg.AssetKey("drift_signals"), limit=100,
                                                    cursor=context.cursor, ascending=True)
    if not found.records:
        return dg.SkipReason("no new drift_signals materialization since the last tick")
    campaigns, quiet = [], []
    for record in found.records:
        event = record.asset_materialization
        drifted = event.metadata.get("drifted")
        if drifted is not None and drifted.value and event.partition:
            campaigns.append(campaign_id_for(event.partition))
        else:
            signals = event.metadata.get("signals")
            quiet.append(f"{event.partition}: no drift {signals.value if signals else ''}")
    campaigns = sorted(set(campaigns))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=c, partition_key=c, tags={"trigger": "drift"}) for c in campaigns],
        dynamic_partitions_requests=[relabel_campaigns.build_add_request(campaigns)] if campaigns else None,
        skip_reason=None if campaigns else dg.SkipReason("; ".join(quiet)),
        cursor=found.cursor,
    )


defs = dg.Definitions(assets=[production_predictions, drift_signals, relabel_campaign],
                      jobs=[relabel_campaign_job], sensors=[drift_campaign_sensor])
