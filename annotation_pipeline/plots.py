"""Small charts for asset metadata: PNG bytes, embedded in Markdown the Dagster UI renders.

matplotlib with the non-interactive Agg backend: no display, no fonts downloaded.
"""

from __future__ import annotations

import base64
import io
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig, description: str | None = None) -> bytes:
    """PNG bytes; ``description`` goes into the PNG's Description text chunk too (what a screen
    reader or a script can read without looking at the pixels)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight",
                metadata={"Description": description} if description else None)
    plt.close(fig)
    return buf.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def bar_chart(values: pd.Series, title: str, xlabel: str, reference: float | None = None) -> bytes:
    """Horizontal bars, one per index entry (e.g. kappa per annotator); NaN bars are left empty."""
    values = values.astype(float)
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * max(len(values), 3) + 0.8))
    ax.barh(values.index.astype(str), np.nan_to_num(values.to_numpy(), nan=0.0),
            color=["#c0392b" if v < (reference if reference is not None else -np.inf) else "#2e86c1"
                   for v in np.nan_to_num(values.to_numpy(), nan=0.0)])
    if reference is not None:
        ax.axvline(reference, color="#555", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()
    return _png(fig)


def histogram(values: pd.Series, title: str, xlabel: str, bins: int = 20, value_range=(0.0, 1.0)) -> bytes:
    fig, ax = plt.subplots(figsize=(5.5, 2.6))
    ax.hist(values.dropna().astype(float), bins=bins, range=value_range, color="#2e86c1")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _png(fig)


def share_comparison(shares: pd.DataFrame, title: str = "Predicted label shares") -> bytes:
    """Reference against current share per label (columns label, reference_share, current_share)."""
    shares = shares.sort_values("label")
    y = np.arange(len(shares))
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * max(len(shares), 3) + 0.8))
    ax.barh(y - 0.2, shares["reference_share"], height=0.4, color="#95a5a6", label="reference")
    ax.barh(y + 0.2, shares["current_share"], height=0.4, color="#2e86c1", label="this day")
    ax.set_yticks(y, shares["label"].astype(str))
    ax.set_xlabel("share of predictions")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def reliability_diagram(table: pd.DataFrame, title: str = "Reliability of consensus confidence",
                        ece: float | None = None, note: str | None = None) -> bytes:
    """Accuracy against mean confidence per bin (``consensus.calibration.reliability_table``),
    with the diagonal a calibrated model sits on and bar widths showing how many labels each holds.

    ``note`` (``consensus.calibration.single_bin_note``: every item in one bin) is written on the
    chart, the bin shaded, and the ECE left out of the title: one dot cannot show calibration, and
    a chart that only showed the dot would let a reader think it did."""
    filled = table[table["n"] > 0]
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="#555", linestyle="--", linewidth=1, label="calibrated")
    ax.plot(filled["mean_confidence"], filled["accuracy"], marker="o", color="#2e86c1",
            label="consensus")
    ax.set_ylabel("accuracy against truth")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title + (f" (ECE {ece:.3f})" if ece is not None and not note else ""))
    ax.legend(loc="upper left")
    if note:
        only = filled.iloc[0]
        ax.axvspan(float(only["bin_low"]), float(only["bin_high"]), color="#f5b041", alpha=0.25, linewidth=0)
        sentence = (note[0].upper() + note[1:] + ".").replace(", ", ",\u00a0", 1)  # keep "[a, b]" on one line
        ax.text(0.04, 0.62, textwrap.fill(sentence, 46), transform=ax.transAxes,
                fontsize=9, va="top", bbox={"boxstyle": "round", "facecolor": "#fff8e5", "edgecolor": "#e0a800"})
    width = (table["bin_high"] - table["bin_low"]).to_numpy()
    ax_n.bar(table["bin_low"], table["n"], width=width, align="edge", color="#aab7b8")
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel("labels")
    return _png(fig, note)


def weekly_trend(trends: pd.DataFrame, value: str, title: str, ylabel: str) -> bytes:
    """One line per vendor over weeks (``vendor.scorecards.weekly_trends``: vendor, week, ``value``)."""
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    for vendor, rows in trends.sort_values("week").groupby("vendor"):
        ax.plot(rows["week"].astype(str), rows[value].astype(float), marker="o", label=str(vendor))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("week (Monday)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def quality_against_cost(pilot: pd.DataFrame, quality: str = "gold_accuracy",
                         cost: str = "cost_per_accepted_label", currency: str = "USD") -> bytes:
    """A pilot's vendors as points: cost per accepted label across, quality up (up and left is better)."""
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    x, y = pilot[cost].astype(float).to_numpy(), pilot[quality].astype(float).to_numpy()
    ax.scatter(x, y, s=60, color="#2e86c1")
    for xi, yi, name in zip(x, y, pilot["vendor"].astype(str)):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel(f"cost per accepted label ({currency})")
    ax.set_ylabel(quality.replace("_", " "))
    ax.set_ylim(0, 1.05)
    ax.set_title("Pilot: quality against cost")
    return _png(fig)
