"""Vendor wiring: the handoff of a batch and the intake of what comes back.

The vendor side reads only ``anonymized_items`` (never ``raw_items``); a test holds this.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, VENDOR_TASKS
from annotation_pipeline.defs.common import OWNERS, counts_metadata, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot, VendorExchange
from annotation_pipeline.formats import intake_vendor_returns
from annotation_pipeline.handoff import build_vendor_batch
from annotation_pipeline.project_files import load_guidelines, load_ontology
from annotation_pipeline.qa import QAThresholds, validate_annotations


class HandoffConfig(dg.Config):
    overlap: int = 3      # different annotators per task: enough for a majority and for kappa
    gold_tasks: int = 4   # hidden gold tasks per batch


def gold_items(data_root: DataRoot) -> pd.DataFrame:
    images = sorted((data_root.root / "gold" / "images").glob("*.png"))
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
    if labeling_queue.empty:
        context.log.warning("labeling queue is empty: no batch to send")
        return dg.Output(VENDOR_TASKS.empty(), metadata={"tasks": 0})
    batch = build_vendor_batch(
        labeling_queue, anonymized_items, prelabels, gold_items(data_root), data_root.root,
        data_root.root / "handoff" / ".staging", vendor=vendor.vendor, partition_date=date,
        overlap=config.overlap, n_gold=config.gold_tasks, ontology=load_ontology(), guidelines=load_guidelines())
    tasks_path = data_root.root / "handoff" / batch.batch_id / "tasks.parquet"
    tasks_path.parent.mkdir(parents=True, exist_ok=True)
    batch.tasks.to_parquet(tasks_path, index=False)
    location = vendor.deliver(batch)
    return dg.Output(batch.tasks, metadata={
        "batch_id": batch.batch_id, "delivered_to": location, "tasks": len(batch.tasks),
        "gold_tasks": int(batch.tasks["is_gold"].sum()), "overlap": config.overlap,
        "answers_expected": len(batch.tasks) * config.overlap,
        **table_metadata(batch.tasks),
    })


def _ledger_path(data_root: DataRoot, vendor: str):
    return data_root.root / "intake_ledger" / f"{vendor}.parquet"


@dg.asset(
    group_name="vendor", partitions_def=daily_partitions, owners=OWNERS, kinds={"labelstudio", "parquet"},
    description="Vendor answers read from the inbox (Label Studio JSON or COCO), mapped to one contract "
                "in pixel coordinates, and validated row by row by the Great Expectations suite. Rows that "
                "fail, and files that cannot be read, go to the quarantine with a reason; a resubmitted "
                "identical file is recognized by its sha256 and not counted twice.\n\n"
                + ANNOTATIONS.markdown(),
)
def returned_annotations(context: dg.AssetExecutionContext, data_root: DataRoot, vendor: VendorExchange,
                         vendor_batches: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    date = context.partition_key
    ontology = load_ontology().raw
    if vendor_batches.empty:
        return dg.Output(ANNOTATIONS.empty(), metadata=counts_metadata(0, 0, 0))
    frames, quarantines, file_reports = [], [], []
    ledger_path = _ledger_path(data_root, vendor.vendor)
    ledger = pd.read_parquet(ledger_path) if ledger_path.exists() else \
        pd.DataFrame({"source_sha256": pd.Series(dtype=str), "partition_date": pd.Series(dtype=str)})
    # Files ingested for other days count as seen; this day's own files are re-read on a rerun.
    seen = set(ledger.loc[ledger["partition_date"] != date, "source_sha256"])
    for batch_id, tasks in vendor_batches.groupby("batch_id"):
        inbox, files = vendor.collect_returns(batch_id)
        intake = intake_vendor_returns(files, inbox, tasks, ontology, vendor=vendor.vendor,
                                       already_ingested_sha256=seen, partition_date=date)
        frames.append(intake.annotations); quarantines.append(intake.quarantine); file_reports.append(intake.files)
    parsed = pd.concat(frames, ignore_index=True)
    files_report = pd.concat(file_reports, ignore_index=True)
    validation = validate_annotations(parsed, vendor_batches, ontology, thresholds=QAThresholds())
    quarantine = pd.concat([*quarantines, validation.quarantined], ignore_index=True)
    data_root.write_quarantine("intake", date, quarantine)
    new_ledger = pd.concat([ledger[ledger["partition_date"] != date],
                            files_report.loc[files_report["status"] == "accepted", ["source_sha256"]]
                            .assign(partition_date=date)], ignore_index=True)
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    new_ledger.to_parquet(ledger_path, index=False)
    n_rows_received = int(files_report["n_received"].sum())
    accepted = validation.accepted
    return dg.Output(accepted, metadata={
        **counts_metadata(n_rows_received, len(accepted), n_rows_received - len(accepted)),
        "files_received": len(files_report),
        "files_by_status": dg.MetadataValue.json(files_report["status"].value_counts().to_dict()),
        "quarantine_reasons": dg.MetadataValue.json(quarantine["reason"].value_counts().to_dict()),
        "answers_by_annotator": dg.MetadataValue.json(accepted["annotator_id"].value_counts().to_dict()),
        **table_metadata(accepted.drop(columns=["geometry_wkb"])),
    })


defs = dg.Definitions(assets=[vendor_batches, returned_annotations])
