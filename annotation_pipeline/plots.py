"""Small charts for asset metadata: PNG bytes, embedded in Markdown the Dagster UI renders.

matplotlib with the non-interactive Agg backend: no display, no fonts downloaded.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
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
