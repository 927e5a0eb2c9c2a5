"""QA wiring: the intake of vendor returns with its checks, the quarantine, annotator scorecards.

The Great Expectations suites run in the intake step, which declares them as checks of
``returned_annotations``: the row-level suite reports, having quarantined the failing rows;
batch health (``qa.batch_health.BATCH_HEALTH_CHECKS``) is ``blocking=True`` where it must
stop a batch, so a failing batch never reaches consensus. The step writes the ``quarantine``
asset before the checks can stop the run.
"""

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, ANNOTATOR_SCORECARDS, QUARANTINE
from annotation_pipeline.defs.common import (
    OWNERS,
    contract_metadata,
    counts_metadata,
    daily_partitions,
    table_metadata,
    ui_metadata,
)
from annotation_pipeline.defs.gold import read_gold
from annotation_pipeline.defs.resources import DataRoot, VendorExchange
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.plots import bar_chart, markdown_image
from annotation_pipeline.qa.batch_health import BATCH_HEALTH_CHECKS
from annotation_pipeline.qa.gold_demand import record_gold_demand
from annotation_pipeline.qa.outcomes import CheckOutcome, QAThresholds
from annotation_pipeline.qa.row_suite import row_rules
from annotation_pipeline.qa.scorecards import annotator_scorecards as score_annotators
from annotation_pipeline.vendor.returns import IntakeLedger, process_vendor_returns

_THRESHOLDS = QAThresholds()
# Check names are fixed by the ontology (row rules) and the batch-health list, so the UI shows
# every check before the first run.
ROW_CHECKS = [(f"rows_{r.reason}", r.description) for r in row_rules(load_ontology().raw, _THRESHOLDS)]
# Partitioned checks (Dagster's partitions_def on a check spec): each result belongs to the day it
# judged, so a later day's empty run shows green for that day only and never hides an earlier
# day's failures in the UI.
CHECK_SPECS = (
    [dg.AssetCheckSpec(name, asset="returned_annotations", blocking=False, partitions_def=daily_partitions,
                       description=f"Great Expectations row rule: {desc}. Failing rows are quarantined; "
                                   "the batch goes on.") for name, desc in ROW_CHECKS]
    + [dg.AssetCheckSpec(spec.name, asset="returned_annotations", blocking=spec.blocking,
                         partitions_def=daily_partitions, description=spec.description)
       for spec in BATCH_HEALTH_CHECKS]
)


def _data_docs(url: str) -> dict:
    """The Data Docs page as a path (a ``file://`` link does not open from the UI; the page itself
    opens offline once copied out, see ``qa.data_docs``). The page's folder is this run's alone:
    a later run publishes beside it, so the path stays valid (``qa.gx_bridge.publish_site``)."""
    return {"data_docs": dg.MetadataValue.path(str(url).removeprefix("file://"))} if url else {}


def gx_results_markdown(rows: list[dict]) -> str:
    """Each expectation's result as a Markdown table the UI renders."""
    shown = pd.DataFrame(rows).drop(columns=["description"], errors="ignore")
    return shown.to_markdown(index=False) if len(shown) else "(nothing to validate)"


def _check_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    metadata = {k: (dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v)
                for k, v in outcome.metadata.items() if v is not None and k != "data_docs"}
    metadata.update(_data_docs(outcome.metadata.get("data_docs") or ""))
    if outcome.gx_results:
        metadata["gx_results"] = dg.MetadataValue.md(gx_results_markdown(outcome.gx_results))
    if outcome.failing_examples:
        metadata["failing_examples"] = dg.MetadataValue.md(
            pd.DataFrame(outcome.failing_examples).to_markdown(index=False))
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, metadata=ui_metadata(metadata),
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else dg.AssetCheckSeverity.WARN)


@dg.multi_asset(
    partitions_def=daily_partitions, can_subset=False, check_specs=CHECK_SPECS,
    outs={
        "returned_annotations": dg.AssetOut(
            group_name="vendor", owners=OWNERS, kinds={"labelstudio", "parquet"},
            metadata=contract_metadata(ANNOTATIONS),
            description="Vendor answers read from the inbox (Label Studio JSON or COCO), mapped to one "
                        "contract in pixel coordinates, and validated row by row by the Great Expectations "
                        "suite (Data Docs linked from each check). Rows that fail, and files that cannot be "
                        "read, go to the quarantine with a reason; a resubmitted identical file is recognized "
                        "by its sha256 and not counted twice. Batch-health checks are blocking: a failing "
                        "batch never reaches consensus.\n\n" + ANNOTATIONS.markdown()),
        "quarantine": dg.AssetOut(
            group_name="qa", owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(QUARANTINE),
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
                                    docs_dir=data_root.layout.data_docs_for(date))
    data_root.write_quarantine("intake", date, report.quarantine)
    ledger.record(date, report.accepted_sha256)
    gold_gate = next(o for o in report.health if o.name == "gold_accuracy_overall")
    record_gold_demand(data_root.layout.gold_demand_of_day(vendor.vendor, date),
                       gold_gate.metadata["gold_tasks_next_batch"], partition_date=date,
                       reason=gold_gate.metadata["message"])

    day = data_root.read_quarantine(date)  # every stage's rows for the day, this one's included
    by_stage = day.groupby(["stage", "reason"]).size().reset_index(name="count")
    yield dg.Output(day, output_name="quarantine", metadata=ui_metadata({
        "by_stage": dg.MetadataValue.json(day["stage"].value_counts().to_dict()),
        "by_reason": dg.MetadataValue.md(by_stage.to_markdown(index=False) if len(by_stage) else "(nothing quarantined)"),
        **table_metadata(day, QUARANTINE),
    }, data_root.root))
    accepted, docs_url = report.accepted, report.validation.data_docs_url
    day_index = data_root.layout.data_docs_index(date)  # every run's validations of the day
    yield dg.Output(accepted, output_name="returned_annotations", metadata=ui_metadata({
        **counts_metadata(report.received, len(accepted), report.quarantined),
        **report.file_counts(), "ledger_files_recorded": len(report.accepted_sha256),
        "files_by_status": dg.MetadataValue.json(report.files["status"].value_counts().to_dict()),
        "quarantine_reasons": dg.MetadataValue.json(report.quarantine["reason"].value_counts().to_dict()),
        "answers_by_annotator": dg.MetadataValue.json(accepted["annotator_id"].value_counts().to_dict()),
        "gx_suite": report.validation.suite_name,
        **_data_docs(docs_url or ""),
        **({"data_docs_index": dg.MetadataValue.path(str(day_index))} if day_index.is_file() else {}),
        "gx_results": dg.MetadataValue.md(gx_results_markdown(report.validation.expectation_results())),
        **table_metadata(accepted, ANNOTATIONS),
    }, data_root.root))
    for outcome in [*report.validation.check_outcomes(), *report.health]:
        yield _check_result(outcome)



@dg.asset(
    group_name="qa", partitions_def=daily_partitions, owners=OWNERS, kinds={"parquet"},
    metadata=contract_metadata(ANNOTATOR_SCORECARDS),
    description="Per annotator: answers, tasks, accuracy on hidden gold tasks, rework rate (share of their "
                "rows quarantined), median time per task and agreement with the consensus: what an "
                "annotation manager compares vendors and people by.",
)
def annotator_scorecards(data_root: DataRoot, returned_annotations: pd.DataFrame, quarantine: pd.DataFrame,
                         vendor_batches: pd.DataFrame, consensus_labels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    cards = score_annotators(returned_annotations, quarantine, vendor_batches, read_gold(data_root),
                             consensus_labels=consensus_labels)
    chart = {}
    if len(cards) and cards["gold_accuracy"].notna().any():
        chart["chart_gold_accuracy"] = dg.MetadataValue.md(markdown_image(bar_chart(
            cards.set_index("annotator_id")["gold_accuracy"], "Accuracy on hidden gold tasks", "gold accuracy",
            reference=0.6), "gold accuracy per annotator"))
    return dg.Output(cards, metadata=ui_metadata({
        "annotators": len(cards), **chart,
        "scorecards": dg.MetadataValue.md(cards.round(3).to_markdown(index=False) if len(cards) else "(none)"),
        **table_metadata(cards, ANNOTATOR_SCORECARDS),
    }, data_root.root))


defs = dg.Definitions(assets=[intake_vendor_returns_and_validate, annotator_scorecards])
