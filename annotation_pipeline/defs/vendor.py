"""Vendor wiring: the handoff of a batch and the intake of what comes back.

The vendor side reads only ``anonymized_items`` (never ``raw_items``); a test holds this.
"""

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE, VENDOR_TASKS
from annotation_pipeline.defs.common import OWNERS, counts_metadata, daily_partitions, table_metadata
from annotation_pipeline.defs.consensus import read_gold
from annotation_pipeline.defs.resources import DataRoot, VendorExchange
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.qa.suite import QAThresholds, row_rules
from annotation_pipeline.vendor.handoff import build_vendor_batch, record_sent, tasks_sent
from annotation_pipeline.vendor.returns import IntakeLedger, process_vendor_returns


class HandoffConfig(dg.Config):
    overlap: int = 3      # different annotators per task: enough for a majority and for kappa
    gold_tasks: int = 4   # hidden gold tasks per batch


def gold_items(data_root: DataRoot) -> pd.DataFrame:
    images = sorted(data_root.layout.gold_images.glob("*.png"))
    from PIL import Image

    sizes = [Image.open(p).size for p in images]
    return pd.DataFrame({"item_id": [p.stem for p in images], "image_path": [str(p) for p in images],
                         "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]})


@dg.asset(
    group_name="vendor", partitions_def=daily_partitions, owners=OWNERS, kinds={"labelstudio", "parquet"},
    deps=["gold_set"],
    description="The day's handoff: a batch folder with anonymized images, Label Studio import tasks "
                "carrying the pre-labels as predictions, the guidelines, and a manifest with sha256 "
                "checksums, overlap k and ontology/guideline versions, delivered through the vendor "
                "resource. Hidden gold tasks are mixed in. This table is our private side of it (which "
                "task is which item, which are gold); it is never sent.\n\n" + VENDOR_TASKS.markdown(),
)
def vendor_batches(context: dg.AssetExecutionContext, config: HandoffConfig, data_root: DataRoot,
                   vendor: VendorExchange, labeling_queue: pd.DataFrame, anonymized_items: pd.DataFrame,
                   prelabels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    date = context.partition_key
    handoff_dir = data_root.layout.handoff
    sent = tasks_sent(handoff_dir, vendor.vendor, date)
    # Only items not yet sent for this day go out: a rerun sends nothing again, and uploads that
    # land late make a second, smaller batch instead of paying to label the first one twice.
    new_items = labeling_queue[~labeling_queue["item_id"].isin(sent.loc[~sent["is_gold"], "item_id"])]
    new_batch, location = None, ""
    if len(new_items):
        new_batch = build_vendor_batch(
            new_items, anonymized_items, prelabels, gold_items(data_root), data_root.root,
            handoff_dir / ".staging", vendor=vendor.vendor, partition_date=date, overlap=config.overlap,
            n_gold=config.gold_tasks, ontology=load_ontology(), guidelines=load_guidelines())
        location = vendor.deliver(new_batch)
        record_sent(handoff_dir, new_batch)
    elif labeling_queue.empty:
        context.log.warning("labeling queue is empty: no batch to send")
    tasks = pd.concat([sent, new_batch.tasks] if new_batch else [sent], ignore_index=True)
    tasks = VENDOR_TASKS.conform(tasks.sort_values(["batch_id", "task_id"], kind="stable"))  # same rows, same order
    batches = sorted(tasks["batch_id"].unique())
    return dg.Output(tasks, metadata={
        "batch_id": new_batch.batch_id if new_batch else (batches[-1] if batches else ""),
        "new_batch": new_batch is not None, "delivered_to": location, "batches": dg.MetadataValue.json(batches),
        "tasks": len(tasks), "new_tasks": len(new_batch.tasks) if new_batch else 0,
        "gold_tasks": int(tasks["is_gold"].sum()), "overlap": config.overlap,
        "answers_expected": int(tasks["overlap"].sum()),
        **table_metadata(tasks),
    })


_THRESHOLDS = QAThresholds()
# (name, blocking, description) of the outcomes qa.batch_health returns; a run fails loudly if
# the two lists drift apart (Dagster rejects a check result without a spec).
BATCH_HEALTH_CHECKS = [
    ("accepted_rows_meet_contract", True, "Rows left after quarantine still satisfy the annotations contract."),
    ("batch_completeness", True, "Every non-gold task has scene answers from k distinct annotators."),
    ("gold_accuracy_overall", True, "The median annotator's accuracy on hidden gold tasks is above the "
                                    "threshold (class match; objects need IoU >= 0.5)."),
    ("quarantine_share", True, "The share of received records quarantined is below the limit."),
    ("annotator_gold_accuracy", False, "Each annotator's gold accuracy is above the threshold (warning)."),
    ("lead_time_outliers", False, "Annotators whose time per task is mostly an outlier (warning)."),
]
# Check names are fixed by the ontology (row rules) and the batch-health list, so the UI shows
# every check before the first run.
ROW_CHECKS = [(f"rows_{r.reason}", r.description) for r in row_rules(load_ontology().raw, _THRESHOLDS)]
CHECK_SPECS = (
    [dg.AssetCheckSpec(name, asset="returned_annotations", blocking=False,
                       description=f"Great Expectations row rule: {desc}. Failing rows are quarantined; "
                                   "the batch goes on.") for name, desc in ROW_CHECKS]
    + [dg.AssetCheckSpec(name, asset="returned_annotations", blocking=blocking, description=desc)
       for name, blocking, desc in BATCH_HEALTH_CHECKS]
)


def _check_result(outcome) -> dg.AssetCheckResult:
    metadata = {k: (dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v)
                for k, v in outcome.metadata.items() if v is not None}
    if metadata.get("data_docs"):
        metadata["data_docs"] = dg.MetadataValue.url("file://" + str(metadata["data_docs"]).removeprefix("file://"))
    if outcome.failing_examples:
        metadata["failing_examples"] = dg.MetadataValue.md(
            pd.DataFrame(outcome.failing_examples).to_markdown(index=False))
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else dg.AssetCheckSeverity.WARN)


@dg.multi_asset(
    partitions_def=daily_partitions, can_subset=False, check_specs=CHECK_SPECS,
    outs={
        "returned_annotations": dg.AssetOut(
            group_name="vendor", owners=OWNERS, kinds={"labelstudio", "parquet"},
            description="Vendor answers read from the inbox (Label Studio JSON or COCO), mapped to one "
                        "contract in pixel coordinates, and validated row by row by the Great Expectations "
                        "suite (Data Docs linked from each check). Rows that fail, and files that cannot be "
                        "read, go to the quarantine with a reason; a resubmitted identical file is recognized "
                        "by its sha256 and not counted twice. Batch-health checks are blocking: a failing "
                        "batch never reaches consensus.\n\n" + ANNOTATIONS.markdown()),
        "quarantine": dg.AssetOut(
            group_name="qa", owners=OWNERS, kinds={"parquet"},
            description="Everything received for the day but not accepted, from every stage (ingestion, "
                        "anonymization, vendor intake, row-level QA), with a reason a person can act on. "
                        "Written by the intake step, before the blocking checks, so it is there precisely "
                        "when a batch is stopped.\n\n" + QUARANTINE.markdown()),
    },
)
def intake_vendor_returns_and_validate(context: dg.AssetExecutionContext, data_root: DataRoot,
                                       vendor: VendorExchange, vendor_batches: pd.DataFrame):
    date = context.partition_key
    ledger = IntakeLedger(data_root.layout.intake_ledger(vendor.vendor))
    returns = {batch_id: vendor.collect_returns(batch_id) for batch_id in sorted(vendor_batches["batch_id"].unique())}
    report = process_vendor_returns(returns, vendor_batches, read_gold(data_root), load_ontology().raw,
                                    vendor=vendor.vendor, already_ingested_sha256=ledger.seen_before(date),
                                    partition_date=date, thresholds=_THRESHOLDS,
                                    docs_dir=data_root.layout.data_docs)
    data_root.write_quarantine("intake", date, report.quarantine)
    ledger.record(date, report.accepted_sha256)

    day = data_root.read_quarantine(date)  # every stage's rows for the day, this one's included
    by_stage = day.groupby(["stage", "reason"]).size().reset_index(name="count")
    yield dg.Output(day, output_name="quarantine", metadata={
        "by_stage": dg.MetadataValue.json(day["stage"].value_counts().to_dict()),
        "by_reason": dg.MetadataValue.md(by_stage.to_markdown(index=False) if len(by_stage) else "(nothing quarantined)"),
        **table_metadata(day),
    })
    accepted, docs_url = report.accepted, report.validation.data_docs_url
    yield dg.Output(accepted, output_name="returned_annotations", metadata={
        **counts_metadata(report.received, len(accepted), report.quarantined),
        **report.file_counts(), "ledger_files_recorded": len(report.accepted_sha256),
        "files_by_status": dg.MetadataValue.json(report.files["status"].value_counts().to_dict()),
        "quarantine_reasons": dg.MetadataValue.json(report.quarantine["reason"].value_counts().to_dict()),
        "answers_by_annotator": dg.MetadataValue.json(accepted["annotator_id"].value_counts().to_dict()),
        "gx_suite": report.validation.suite_name,
        **({"data_docs": dg.MetadataValue.url("file://" + docs_url.removeprefix("file://"))} if docs_url else {}),
        **table_metadata(accepted.drop(columns=["geometry_wkb"])),
    })
    for outcome in [*report.validation.check_outcomes(), *report.health]:
        yield _check_result(outcome)


defs = dg.Definitions(assets=[vendor_batches, intake_vendor_returns_and_validate])
