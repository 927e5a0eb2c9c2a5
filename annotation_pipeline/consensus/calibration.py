"""Does a confidence of 0.9 mean right nine times in ten? Expected calibration error and its table."""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               n_bins: int = 10) -> float:
    """Σ_bins (n_bin / n) · |accuracy_bin − mean confidence_bin| (Guo et al. 2017)."""
    table = reliability_table(confidence, correct, n_bins)
    filled = table[table["n"] > 0]
    if not len(filled):
        return float("nan")
    gap = (filled["accuracy"] - filled["mean_confidence"]).abs()
    return float((filled["n"] * gap).sum() / filled["n"].sum())
