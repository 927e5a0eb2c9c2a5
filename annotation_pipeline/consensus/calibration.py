"""Does a confidence of 0.9 mean right nine times in ten? Expected calibration error and its table."""

from __future__ import annotations

import numpy as np
import pandas as pd


# Equal-width bins, not equal-mass ones. A day holds 12 hidden gold tasks by default (more when
# the QA gate asks) and consensus puts most of them near 1.0 (a 6-image sample partition: 11 of 12
# in [0.9, 1.0]; three unanimous answers under majority vote are exactly 1.0): equal-mass bins
# would cut that cluster into bins of one or two items whose accuracy is noise,
# and cannot split tied confidences at all. Fixed edges keep days and releases comparable and
# match scikit-learn's ``calibration_curve`` (the oracle in the tests). What a day whose gold
# lands in one bin needs is to be told so: ``single_bin_note``.
def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width confidence bins: ``bin_low, bin_high, n, mean_confidence, accuracy`` (empty bins kept)."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence has {confidence.shape} values, correct {correct.shape}; "
                         "pass one of each per label")
    # bin i holds (i/n, (i+1)/n]; a confidence of exactly 0 joins the first bin
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    n = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / n
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / n
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "n": n,
                         "mean_confidence": mean_confidence, "accuracy": accuracy})


def single_bin_note(table: pd.DataFrame | list[dict]) -> str | None:
    """The sentence a reliability table (or its records) needs when all its items fall in one bin:
    one point cannot show whether confidence follows accuracy, only how often that bin was right.
    None when two or more bins hold items, or none does."""
    table = pd.DataFrame(table)
    filled = table[table["n"] > 0] if len(table) else table
    if len(filled) != 1:
        return None
    row = filled.iloc[0]
    n, where = int(row["n"]), f"[{float(row['bin_low']):.2f}, {float(row['bin_high']):.2f}]"
    who = "the one gold item has" if n == 1 else f"all {n} gold items have"
    return (f"{who} confidence in {where}: calibration cannot be judged from this day; "
            f"{float(row['accuracy']):.0%} right there")


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               n_bins: int = 10) -> float:
    """Σ_bins (n_bin / n) · |accuracy_bin − mean confidence_bin| (Guo et al. 2017)."""
    table = reliability_table(confidence, correct, n_bins)
    filled = table[table["n"] > 0]
    if not len(filled):
        return float("nan")
    gap = (filled["accuracy"] - filled["mean_confidence"]).abs()
    return float((filled["n"] * gap).sum() / filled["n"].sum())


def held_out_gold_calibration(answers: pd.DataFrame, gold: pd.DataFrame, *, method: str = "auto",
                              n_bins: int = 10) -> dict:
    """How well the consensus confidence of scene labels predicts being right, judged on hidden gold tasks.

    The consensus stage clamps gold items to their known answer, so their released confidence
    says nothing. Here the same aggregator is fitted on the same scene answers *without* gold,
    and its label and confidence on the gold items are compared with the gold answers: an
    honest (slightly pessimistic: gold also sharpens the annotators' skills) estimate of how
    calibrated the released confidence is. ``answers``: ANNOTATIONS rows (choices are used);
    ``gold``: GOLD_LABELS. Returns JSON-able parts of a quality report: ``calibration``
    (``method``, ``n_gold_items``, ``ece``: None without gold items, ``note``: ``single_bin_note``,
    None when the gold spans bins) and ``calibration_bins`` (the reliability table as records, empty
    bins included).
    """
    from annotation_pipeline.consensus.auto import aggregate_labels  # auto does not import this module

    choices = answers[answers["kind"] == "choice"]
    truth = gold.loc[gold["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
    if not len(choices) or not choices["item_id"].isin(truth.index).any():
        return {"calibration": {"method": method, "n_gold_items": 0, "ece": None, "note": None},
                "calibration_bins": []}
    labels = aggregate_labels(choices[["item_id", "annotator_id", "label"]].astype(str), method)
    judged = labels[labels["item_id"].isin(truth.index)]
    correct = (judged["label"].astype(str).to_numpy() == truth.reindex(judged["item_id"]).astype(str).to_numpy())
    confidence = judged["confidence"].to_numpy(dtype=float)
    table = reliability_table(confidence, correct, n_bins)
    bins = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in table.astype({"n": "int64"}).to_dict("records")]
    return {"calibration": {"method": labels.attrs["method"], "n_gold_items": len(judged),
                            "ece": round(expected_calibration_error(confidence, correct, n_bins), 6),
                            "note": single_bin_note(table)},
            "calibration_bins": bins}
