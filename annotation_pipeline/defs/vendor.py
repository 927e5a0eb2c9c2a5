"""Vendor wiring: the handoff of a batch (``vendor_batches``).

What comes back is read and judged by the QA wiring (``defs/qa.py``). The vendor side reads
only ``anonymized_items`` (never ``raw_items``); a test holds this.
"""

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.defs.common import OWNERS, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot, VendorExchange
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.qa.gold_demand import gold_tasks_demanded
from annotation_pipeline.vendor.handoff import build_vendor_batch, record_sent, tasks_sent


class HandoffConfig(dg.Config):
    overlap: int = 3      # different annotators per task: enough for a majority and for kappa
    # Hidden gold tasks per batch, at least; more when the last judged batch's gold gate could
    # not tell (qa.gold_demand). 12 x overlap 3 = 36 gold answers judge every day of 2026 of the
    # sample world at the demo's size (a test holds this); 4 left the gate to chance.
    gold_tasks: int = 12


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
    sent = tasks_sent(data_root.layout, vendor.vendor, date)
    # Only items not yet sent for this day go out: a rerun sends nothing again, and uploads that
    # land late make a second, smaller batch instead of paying to label the first one twice.
    new_items = labeling_queue[~labeling_queue["item_id"].isin(sent.loc[~sent["is_gold"], "item_id"])]
    new_batch, location = None, ""
    n_gold = max(config.gold_tasks, gold_tasks_demanded(data_root.layout.gold_demand(vendor.vendor), date))
    if len(new_items):
        new_batch = build_vendor_batch(
            new_items, anonymized_items, prelabels, gold_items(data_root), data_root.root,
            data_root.layout.handoff_staging, vendor=vendor.vendor, partition_date=date, overlap=config.overlap,
            n_gold=n_gold, ontology=load_ontology(), guidelines=load_guidelines())
        location = vendor.deliver(new_batch)
        record_sent(data_root.layout, new_batch)
    elif labeling_queue.empty:
        context.log.warning("labeling queue is empty: no batch to send")
    tasks = pd.concat([sent, new_batch.tasks] if new_batch else [sent], ignore_index=True)
    tasks = VENDOR_TASKS.conform(tasks.sort_values(["batch_id", "task_id"], kind="stable"))  # same rows, same order
    batches = sorted(tasks["batch_id"].unique())
    return dg.Output(tasks, metadata={
        "batch_id": new_batch.batch_id if new_batch else (batches[-1] if batches else ""),
        "new_batch": new_batch is not None, "delivered_to": location, "batches": dg.MetadataValue.json(batches),
        "tasks": len(tasks), "new_tasks": len(new_batch.tasks) if new_batch else 0,
        "gold_tasks": int(tasks["is_gold"].sum()), "gold_tasks_asked": n_gold, "overlap": config.overlap,
        "answers_expected": int(tasks["overlap"].sum()),
        **table_metadata(tasks),
    })


defs = dg.Definitions(assets=[vendor_batches])
