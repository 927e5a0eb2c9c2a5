"""QA wiring: the annotator scorecards.

The Great Expectations suites run in the intake step (defs/vendor.py), which declares them as
checks of ``returned_annotations`` (the row-level suite reports, having quarantined the failing
rows; batch health is ``blocking=True``, so a failing batch never reaches consensus) and writes
the ``quarantine`` asset before the checks can stop the run.
"""


import dagster as dg
import pandas as pd

from annotation_pipeline.defs.common import OWNERS, daily_partitions, table_metadata
from annotation_pipeline.defs.consensus import read_gold
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.plots import bar_chart, markdown_image
from annotation_pipeline.qa.suite import annotator_scorecards as score_annotators


@dg.asset(
    group_name="qa", partitions_def=daily_partitions, owners=OWNERS, kinds={"parquet"},
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
    return dg.Output(cards, metadata={
        "annotators": len(cards), **chart,
        "scorecards": dg.MetadataValue.md(cards.round(3).to_markdown(index=False) if len(cards) else "(none)"),
        **table_metadata(cards),
    })


defs = dg.Definitions(assets=[annotator_scorecards])
