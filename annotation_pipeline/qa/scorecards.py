"""Per-annotator figures: lead-time statistics and the scorecards an annotation manager reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.qa.gold import gold_answer_outcomes


def lead_time_by_annotator(accepted: pd.DataFrame, robust_z: float = 3.5) -> pd.DataFrame:
    """Per annotator: answers, median seconds, share of answers whose log time is an outlier.

    One answer = one (task, annotator); modified z-score (0.6745 (x - median) / MAD) over all
    answers of the batch, on log seconds.
    """
    answers = accepted.dropna(subset=["lead_time_s"]).drop_duplicates(["batch_id", "task_id", "annotator_id"])
    seconds = answers["lead_time_s"].to_numpy(dtype=float)
    log_t = np.log(np.clip(seconds, 1e-3, None))
    center = np.median(log_t) if len(log_t) else 0.0
    mad = np.median(np.abs(log_t - center)) if len(log_t) else 0.0
    if mad > 0:
        z = 0.6745 * (log_t - center) / mad
    else:  # more than half the answers share one time: IBM's fallback, mean absolute deviation
        mean_ad = np.mean(np.abs(log_t - center)) if len(log_t) else 0.0
        z = (log_t - center) / (1.253314 * mean_ad) if mean_ad > 0 else np.zeros(len(log_t))
    frame = pd.DataFrame({"annotator_id": answers["annotator_id"].to_numpy(), "seconds": seconds,
                          "outlier": np.abs(z) > robust_z, "z": z})
    out = frame.groupby("annotator_id", sort=True).agg(
        n_answers=("seconds", "size"), median_lead_time_s=("seconds", "median"),
        outlier_share=("outlier", "mean"), median_robust_z=("z", "median")).reset_index()
    return out


def consensus_agreement(accepted: pd.DataFrame, consensus_labels: pd.DataFrame) -> pd.DataFrame:
    """One row per scene choice on an item with a consensus scene label: annotation_id,
    annotator_id, vendor (when given), item_id and ``agrees`` (the choice equals the consensus)."""
    truth = consensus_labels[consensus_labels["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
    mine = accepted[(accepted["kind"] == "choice").to_numpy() & accepted["item_id"].isin(truth.index).to_numpy()]
    keep = [c for c in ("annotation_id", "annotator_id", "vendor", "item_id") if c in mine.columns]
    agrees = (mine["label"].astype("string") == mine["item_id"].map(truth).astype("string")).fillna(False)
    return mine[keep].assign(agrees=agrees.to_numpy(dtype=bool)).reset_index(drop=True)


SCORECARD_COLUMNS = ["annotator_id", "n_answers", "n_tasks", "gold_tasks", "gold_accuracy",
                     "rework_rate", "median_lead_time_s", "agreement_with_consensus"]


def annotator_scorecards(accepted: pd.DataFrame, quarantined: pd.DataFrame, tasks: pd.DataFrame,
                         gold: pd.DataFrame, consensus_labels: pd.DataFrame | None = None, *,
                         iou_threshold: float = 0.5) -> pd.DataFrame:
    """One row per annotator (columns SCORECARD_COLUMNS).

    n_answers: rows they submitted (accepted + quarantined); n_tasks: distinct tasks accepted;
    rework_rate: share of their rows quarantined; agreement_with_consensus: share of their
    scene choices equal to the consensus scene label (NaN until consensus exists).
    """
    acc = accepted.groupby("annotator_id").agg(n_accepted=("annotation_id", "size"),
                                               n_tasks=("task_id", "nunique"))
    quar = quarantined.dropna(subset=["annotator_id"]).groupby("annotator_id").size().rename("n_quarantined")
    card = acc.join(quar, how="outer").fillna(0)
    card["n_answers"] = card["n_accepted"] + card["n_quarantined"]
    card["rework_rate"] = card["n_quarantined"] / card["n_answers"]
    gold_rows = accepted[accepted["is_gold"].fillna(False).to_numpy(dtype=bool)]
    card["gold_tasks"] = gold_rows.groupby("annotator_id")["task_id"].nunique().reindex(card.index).fillna(0)
    elements = gold_answer_outcomes(accepted, gold, iou_threshold=iou_threshold)
    card["gold_accuracy"] = elements.groupby("annotator_id")["correct"].mean().reindex(card.index)
    card["median_lead_time_s"] = (accepted.drop_duplicates(["batch_id", "task_id", "annotator_id"])
                                  .groupby("annotator_id")["lead_time_s"].median().reindex(card.index))
    card["agreement_with_consensus"] = np.nan
    if consensus_labels is not None and len(consensus_labels):
        agreement = consensus_agreement(accepted, consensus_labels)
        card["agreement_with_consensus"] = agreement.groupby("annotator_id")["agrees"].mean().reindex(card.index)
    out = card.reset_index().rename(columns={"index": "annotator_id"})
    out = out.astype({"n_answers": "int64", "n_tasks": "int64", "gold_tasks": "int64",
                      "annotator_id": "string"})
    return out[SCORECARD_COLUMNS].sort_values("annotator_id").reset_index(drop=True)
