"""Consensus wiring: merged labels, agreement metrics, the review queue and the review loop."""


from pathlib import Path

import dagster as dg
import pandas as pd

from annotation_pipeline.consensus.review import ReviewPolicy
from annotation_pipeline.consensus.review_decisions import read_decisions, reviewer_accuracy
from annotation_pipeline.consensus.review_tasks import audit_sample, build_review_tasks
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.contracts import (
    AGREEMENT_METRICS,
    CONSENSUS_LABELS,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    REVIEW_TASKS,
    REVIEWER_ACCURACY,
)
from annotation_pipeline.defs.common import (
    OWNERS,
    contract_metadata,
    counts_metadata,
    daily_partitions,
    table_metadata,
    ui_metadata,
)
from annotation_pipeline.defs.gold import gold_items, read_gold
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.defs.review_desk import ReviewDesk
from annotation_pipeline.ontology import load_ontology
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


@dg.multi_asset(
    group_name="consensus", partitions_def=daily_partitions, can_subset=False,
    outs={
        "consensus_labels": dg.AssetOut(
            owners=OWNERS, kinds={"numpy", "shapely", "parquet"},
            metadata=contract_metadata(CONSENSUS_LABELS),
            description="Merged labels: scene by Dawid-Skene / (gold-weighted) majority vote with a posterior "
                        "confidence; boxes and polygons clustered by IoU (at most one object per annotator "
                        "per cluster), quorum of the annotators who saw the item, geometry fused by "
                        "annotator reliability. Each label lists the annotation ids behind it.\n\n"
                        + CONSENSUS_LABELS.markdown()),
        "review_queue": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(REVIEW_QUEUE),
            description="Consensus candidates not released, with the evidence: queued for a reviewer (highest "
                        "expected label-accuracy gain first, within the partition's budget), deferred over "
                        "budget, or dismissed automatically with the reason (e.g. drawn only by unreliable "
                        "annotators). Nothing is overwritten.\n\n" + REVIEW_QUEUE.markdown()),
        "agreement_metrics": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(AGREEMENT_METRICS),
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
    yield dg.Output(result.labels, output_name="consensus_labels", metadata=ui_metadata({
        **({"chart_confidence": dg.MetadataValue.md(markdown_image(histogram(
            labels["confidence"], "Confidence of released labels", "confidence"), "confidence"))}
           if len(labels) else {}),
        "method": result.method, **scene_model_metadata(result.scene_model),
        **({"box_pointing_noise_px": result.pointing_noise["box"]} if "box" in result.pointing_noise else {}),
        **{k: int(v) for k, v in result.counts.items()},
        "labels_by_kind": dg.MetadataValue.json(result.labels["kind"].value_counts().to_dict()),
        "mean_confidence": float(result.labels["confidence"].mean()) if len(result.labels) else 0.0,
        **table_metadata(result.labels, CONSENSUS_LABELS),
    }, data_root.root))
    queue = result.review_queue
    yield dg.Output(queue, output_name="review_queue", metadata=ui_metadata({
        "queued": int((queue["status"] == "queued").sum()),
        "deferred": int((queue["status"] == "deferred").sum()),
        "dismissed": int((queue["status"] == "dismissed").sum()),
        "review_budget": result.counts["review_budget"],
        "consensus_candidates": result.counts["consensus_candidates"],
        "review_budget_rule": (
            f"at most {config.review_budget_share:.0%} of {result.counts['consensus_candidates']} candidates "
            f"(scene items {result.counts['candidates_scene_items']} + merged objects "
            f"{result.counts['candidates_merged_objects']} + below-quorum clusters not dismissed "
            f"{result.counts['candidates_open_clusters']}; {result.counts['clusters_dismissed_automatically']} "
            f"dismissed clusters not counted), rounded down"
            + (f", and at most {config.review_budget_max}" if config.review_budget_max is not None else "")
            + f" = {result.counts['review_budget']}; over budget: deferred (in this table, not released) "
              "or, a scene label at or above min_confidence, released"),
        "queued_share_of_candidates": float((queue["status"] == "queued").sum()
                                            / max(result.counts["consensus_candidates"], 1)),
        "by_reason": dg.MetadataValue.json(queue["reason"].value_counts().to_dict()),
        "by_status": dg.MetadataValue.json(queue["status"].value_counts().to_dict()),
        **table_metadata(result.review_queue, REVIEW_QUEUE),
    }, data_root.root))
    yield dg.Output(result.agreement, output_name="agreement_metrics", metadata=ui_metadata({
        **headline, **charts,
        "per_annotator": dg.MetadataValue.md(per_annotator.round(3).to_markdown() if len(per_annotator) else "(none)"),
        "per_class": dg.MetadataValue.md(per_class.round(3).to_markdown() if len(per_class) else "(none)"),
        "annotator_reliability": dg.MetadataValue.md(result.annotator_reliability.round(3).to_markdown()),
        **table_metadata(result.agreement, AGREEMENT_METRICS),
    }, data_root.root))


# ---- the review loop: queued candidates go to reviewers, their decisions come back

class ReviewTasksConfig(dg.Config):
    # hidden gold scene tasks per day: enough to see a careless reviewer within a week
    gold_tasks: int = 4
    # released labels spot-checked per day, those of items that lost answers to quarantine first
    audit_tasks: int = 3


def _image_sources(data_root: DataRoot, anonymized_items: pd.DataFrame) -> pd.DataFrame:
    """Item id -> image path, size and is_gold, for the day's items and the gold set."""
    items = pd.DataFrame({"item_id": anonymized_items["item_id"].astype(str),
                          "path": [str(data_root.root / p) for p in anonymized_items["image_path"]],
                          "width": anonymized_items["width"].astype(float),
                          "height": anonymized_items["height"].astype(float), "is_gold": False})
    gold = gold_items(data_root).rename(columns={"image_path": "path"}).assign(is_gold=True)
    return pd.concat([items, gold], ignore_index=True).drop_duplicates("item_id").set_index("item_id")


@dg.asset(
    group_name="consensus", partitions_def=daily_partitions, owners=OWNERS, kinds={"labelstudio", "parquet"},
    metadata=contract_metadata(REVIEW_TASKS),
    deps=["gold_set"],
    description="The day's queued review candidates as review tasks, with an audit sample of released labels "
                "(items that lost answers to quarantine first) and hidden gold scene tasks mixed in, "
                "delivered through the review desk: on the embedded default `review/<day>/tasks.json` (Label "
                "Studio import tasks, the candidate as a prediction) and its anonymized images. This table is "
                "our private side of it (which task is which candidate, which are gold).\n\n"
                + REVIEW_TASKS.markdown(),
)
def review_tasks(context: dg.AssetExecutionContext, config: ReviewTasksConfig, data_root: DataRoot,
                 review_desk: ReviewDesk, review_queue: pd.DataFrame, consensus_labels: pd.DataFrame,
                 anonymized_items: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    day = context.partition_key
    sources = _image_sources(data_root, anonymized_items)
    gold = read_gold(data_root)
    audit = audit_sample(consensus_labels, data_root.read_quarantine(day), config.audit_tasks)
    tasks = build_review_tasks(review_queue, gold[gold["item_id"].isin(sources.index[sources["is_gold"]])],
                               sources["path"].map(lambda p: Path(p).suffix.lower() or ".png"), day,
                               scene_classes=list(load_ontology().scene_classes), n_gold=config.gold_tasks,
                               audit=audit)
    location = review_desk.send(day, tasks, sources)
    return dg.Output(tasks, metadata=ui_metadata({
        "tasks": len(tasks), "gold_tasks": int(tasks["is_gold"].sum()),
        "queued_candidates": int((review_queue["status"] == "queued").sum()),
        "audited_labels": len(audit),
        "by_reason": dg.MetadataValue.json(tasks.loc[~tasks["is_gold"], "reason"].value_counts().to_dict()),
        "by_kind": dg.MetadataValue.json(tasks["kind"].value_counts().to_dict()),
        "review_folder": dg.MetadataValue.path(location), **table_metadata(tasks, REVIEW_TASKS),
    }, data_root.root))


@dg.multi_asset(
    group_name="consensus", partitions_def=daily_partitions, can_subset=False,
    outs={
        "review_decisions": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(REVIEW_DECISIONS),
            description="What reviewers decided on the day's review tasks (who, when, confirm / override / "
                        "reject, why), read from the review desk's returns like vendor returns: a malformed "
                        "file or decision is quarantined with a reason (stage `review`) and counts reconcile. "
                        "Reasons are scrubbed of personal data. The release applies the latest decision per "
                        "task.\n\n" + REVIEW_DECISIONS.markdown()),
        "reviewer_accuracy": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(REVIEWER_ACCURACY),
            description="Each reviewer's accuracy on the hidden gold review tasks of the day.\n\n"
                        + REVIEWER_ACCURACY.markdown()),
    },
)
def review_decisions(context: dg.AssetExecutionContext, data_root: DataRoot, review_desk: ReviewDesk,
                     review_tasks: pd.DataFrame):
    day = context.partition_key
    returns, files = review_desk.collect(day)
    intake = read_decisions(files, returns, review_tasks, load_ontology(), partition_date=day)
    data_root.write_quarantine("review", day, intake.quarantine)  # replaced on a rerun
    counts = intake.counts()
    decisions, accuracy = intake.decisions, reviewer_accuracy(intake.decisions)
    applied = decisions[~decisions["superseded"] & ~decisions["is_gold"]]
    yield dg.Output(decisions, output_name="review_decisions", metadata=ui_metadata({
        **counts_metadata(counts["received"], counts["accepted"], counts["quarantined"]),
        **{k: v for k, v in counts.items() if k.startswith("files_")},
        "by_decision": dg.MetadataValue.json(applied["decision"].value_counts().to_dict()),
        "quarantined_by_reason": dg.MetadataValue.json(intake.quarantine["reason"].value_counts().to_dict()),
        "superseded": int(decisions["superseded"].sum()), "reason_redactions": intake.redactions,
        "tasks_decided": int(decisions["review_task_id"].nunique()), "tasks": len(review_tasks),
        "reviewer_accuracy": dg.MetadataValue.md(accuracy.round(3).to_markdown(index=False) if len(accuracy)
                                                 else "(no decisions)"),
        "files": dg.MetadataValue.md(intake.files.drop(columns=["source_sha256"]).to_markdown(index=False)
                                     if len(intake.files) else "(no decision files yet)"),
        **table_metadata(decisions, REVIEW_DECISIONS),
    }, data_root.root))
    yield dg.Output(accuracy, output_name="reviewer_accuracy", metadata=ui_metadata({
        **{f"accuracy_{r.reviewer_id}": float(r.accuracy) for r in accuracy.itertuples() if pd.notna(r.accuracy)},
        "gold_decisions": int(accuracy["n_gold"].sum()), **table_metadata(accuracy, REVIEWER_ACCURACY),
    }, data_root.root))


defs = dg.Definitions(assets=[consensus, review_tasks, review_decisions])


def scene_model_metadata(model) -> dict:
    """Which crowd model labelled the scene items and the held-out evidence for it (auto only)."""
    choice = getattr(model, "choice_", None)
    if choice is None:
        return {}
    table = choice.table().round({"held_out_nats_per_answer": 4, "gain_over_vote": 4, "stderr": 4, "z": 1,
                                  "weight": 3})
    return {
        "scene_models_used": " + ".join(f"{name} ({choice.weights[name]:.2f})" for name in choice.members),
        "scene_model_choice": dg.MetadataValue.md(
            "Each candidate fitted on 2 of 3 folds of answers and scored on the held-out answers "
            "(nats per answer; gain over the vote with its standard error by annotator). The labels "
            "are the posterior of a stack: the weights that make the mixture of the candidates' "
            "predictions most likely on the held-out answers.\n\n"
            + table.to_markdown(index=False)),
    }
