"""Consensus wiring: merged labels, agreement metrics and the review queue."""


import dagster as dg
import pandas as pd

from annotation_pipeline.consensus.review import ReviewPolicy
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.contracts import AGREEMENT_METRICS, CONSENSUS_LABELS, GOLD_LABELS, REVIEW_QUEUE
from annotation_pipeline.defs.common import OWNERS, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.plots import bar_chart, histogram, markdown_image


class ConsensusConfig(dg.Config):
    method: str = "auto"          # auto | mv | wmv | ds | ocds | bds
    iou_threshold: float = 0.5    # the usual object-matching threshold (PASCAL VOC / COCO AP50)
    min_confidence: float = 0.7   # below this a scene label is never released unreviewed
    # review budget per partition: at most this share of consensus candidates (and, when set,
    # this many) go to a reviewer, the highest expected label-accuracy gain first
    review_budget_share: float = 0.15
    review_budget_max: int | None = None
    min_review_gain: float = 0.02       # a review expected to fix less than this is not queued
    unreliable_precision: float = 0.5   # annotators whose objects are confirmed less often than
                                        # this: a cluster only they drew is dismissed

    def review_policy(self) -> ReviewPolicy:
        return ReviewPolicy(budget_share=self.review_budget_share, budget_max=self.review_budget_max,
                            min_gain=self.min_review_gain,
                            unreliable_precision=self.unreliable_precision,
                            min_confidence=self.min_confidence, iou_threshold=self.iou_threshold)


def read_gold(data_root: DataRoot) -> pd.DataFrame:
    path = data_root.layout.gold_labels
    return pd.read_parquet(path) if path.exists() else GOLD_LABELS.empty()


@dg.multi_asset(
    group_name="consensus", partitions_def=daily_partitions, can_subset=False,
    outs={
        "consensus_labels": dg.AssetOut(
            owners=OWNERS, kinds={"numpy", "shapely", "parquet"},
            description="Merged labels: scene by Dawid-Skene / (gold-weighted) majority vote with a posterior "
                        "confidence; boxes and polygons clustered by IoU (at most one object per annotator "
                        "per cluster), quorum of the annotators who saw the item, geometry fused by "
                        "annotator reliability. Each label lists the annotation ids behind it.\n\n"
                        + CONSENSUS_LABELS.markdown()),
        "review_queue": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            description="Consensus candidates not released, with the evidence: queued for a reviewer (highest "
                        "expected label-accuracy gain first, within the partition's budget), deferred over "
                        "budget, or dismissed automatically with the reason (e.g. drawn only by unreliable "
                        "annotators). Nothing is overwritten.\n\n" + REVIEW_QUEUE.markdown()),
        "agreement_metrics": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            description="Cohen's kappa (mean pairwise), Fleiss' kappa, Krippendorff's alpha per batch, class "
                        "and annotator, and IoU agreement for geometry.\n\n" + AGREEMENT_METRICS.markdown()),
    },
)
def consensus(context: dg.AssetExecutionContext, config: ConsensusConfig, data_root: DataRoot,
              returned_annotations: pd.DataFrame, vendor_batches: pd.DataFrame):
    result = run_consensus(returned_annotations, vendor_batches, read_gold(data_root), method=config.method,
                           policy=config.review_policy())
    batch_metrics = result.agreement[result.agreement["scope"] == "batch"]
    headline = {f"{r.metric}": float(r.value) for r in batch_metrics.itertuples() if pd.notna(r.value)}
    labels, agreement = result.labels, result.agreement
    per_annotator = agreement[agreement["scope"] == "annotator"].pivot_table(
        index="key", columns="metric", values="value", dropna=False)
    per_class = agreement[agreement["scope"] == "class"].pivot_table(
        index="key", columns="metric", values="value", dropna=False)
    charts = {}
    if "kappa_vs_consensus" in per_annotator:
        charts["chart_kappa_per_annotator"] = dg.MetadataValue.md(markdown_image(bar_chart(
            per_annotator["kappa_vs_consensus"], "Cohen's kappa of each annotator vs consensus", "kappa",
            reference=0.6), "kappa per annotator"))
    if "krippendorff_alpha" in per_class:
        charts["chart_alpha_per_class"] = dg.MetadataValue.md(markdown_image(bar_chart(
            per_class["krippendorff_alpha"], "Krippendorff's alpha per class (one vs rest)", "alpha",
            reference=0.667), "alpha per class"))
    yield dg.Output(result.labels, output_name="consensus_labels", metadata={
        **({"chart_confidence": dg.MetadataValue.md(markdown_image(histogram(
            labels["confidence"], "Confidence of released labels", "confidence"), "confidence"))}
           if len(labels) else {}),
        "method": result.method, **{k: int(v) for k, v in result.counts.items()},
        "labels_by_kind": dg.MetadataValue.json(result.labels["kind"].value_counts().to_dict()),
        "mean_confidence": float(result.labels["confidence"].mean()) if len(result.labels) else 0.0,
        **table_metadata(result.labels.drop(columns=["geometry_wkb"])),
    })
    queue = result.review_queue
    yield dg.Output(queue, output_name="review_queue", metadata={
        "queued": int((queue["status"] == "queued").sum()),
        "deferred": int((queue["status"] == "deferred").sum()),
        "dismissed": int((queue["status"] == "dismissed").sum()),
        "review_budget": result.counts["review_budget"],
        "queued_share_of_candidates": float((queue["status"] == "queued").sum()
                                            / max(result.counts["consensus_candidates"], 1)),
        "by_reason": dg.MetadataValue.json(queue["reason"].value_counts().to_dict()),
        "by_status": dg.MetadataValue.json(queue["status"].value_counts().to_dict()),
        **table_metadata(result.review_queue),
    })
    yield dg.Output(result.agreement, output_name="agreement_metrics", metadata={
        **headline, **charts,
        "per_annotator": dg.MetadataValue.md(per_annotator.round(3).to_markdown() if len(per_annotator) else "(none)"),
        "per_class": dg.MetadataValue.md(per_class.round(3).to_markdown() if len(per_class) else "(none)"),
        "annotator_reliability": dg.MetadataValue.md(result.annotator_reliability.round(3).to_markdown()),
        **table_metadata(result.agreement),
    })


defs = dg.Definitions(assets=[consensus])
