"""What QA decides, in plain objects: thresholds, the outcome of an expectation and of a check.

The Dagster wiring (``defs/qa.py``) turns a :class:`CheckOutcome` into an asset check result;
nothing here knows Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

STAGE = "qa"


@dataclass(frozen=True)
class QAThresholds:
    # Boxes drawn to the very edge land a pixel or two outside after percent rounding.
    bounds_tolerance_px: float = 2.0
    # The handoff image size and the size the annotator saw must agree (rounding only).
    image_size_tolerance_px: float = 1.0
    gold_iou: float = 0.5                      # PASCAL VOC match criterion
    # Gates judge evidence, not point estimates (qa.evidence): a blocking gate fails only when
    # the interval at this confidence (one-sided) lies on the wrong side of its threshold, and
    # warns "insufficient" when it straddles it.
    gate_confidence: float = 0.95
    # The annotator at the median of the batch's gold answers must be right on at least 60 % of
    # gold elements (blocking): the same bar as each annotator's warning, so a batch is stopped
    # when most of its answers come from annotators who would each be flagged.
    min_gold_accuracy: float = 0.6
    min_annotator_gold_accuracy: float = 0.6   # per annotator; warning
    max_quarantine_share: float = 0.2          # blocking
    # With no gold answer at all there is no estimate to scale: ask for what judges a day of the
    # sample world (12 gold tasks x overlap 3), measured over every day of 2026.
    gold_answers_when_none: int = 36
    # Iglewicz & Hoaglin: |modified z| > 3.5 is an outlier; computed on log(seconds) because
    # time per task is right-skewed.
    lead_time_robust_z: float = 3.5
    max_lead_time_outlier_share: float = 0.5   # per annotator; warning
    min_complete_task_share: float = 1.0       # every non-gold task reaches its overlap k


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the row-level suite on one batch."""
    reason: str                 # reason code written to the quarantine
    expectation_type: str       # e.g. expect_column_values_to_be_between
    column: str
    description: str
    success: bool               # as Great Expectations reported it
    element_count: int
    unexpected_count: int       # as Great Expectations reported it
    quarantined_count: int      # rows this rule flags by its pandas mask (equals unexpected_count)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckOutcome:
    """What a Dagster asset check needs: pass/fail, blocking, metadata, failing examples."""
    name: str
    passed: bool
    blocking: bool
    severity: str               # "ERROR" or "WARN"
    description: str
    metadata: dict[str, Any]
    failing_examples: list[dict[str, Any]] = field(default_factory=list)
    # each GX expectation's result behind this check (``gx_bridge.expectation_results``)
    gx_results: list[dict[str, Any]] = field(default_factory=list)



def plain(value: Any) -> Any:
    """JSON-able scalars for Dagster metadata."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is pd.NA or value is None:
        return None
    return value if isinstance(value, (int, str, bool)) else str(value)


def records(df: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """The first ``n`` rows as JSON-able dicts (failing examples of a check)."""
    return [{k: plain(v) for k, v in r.items()} for r in df.head(n).to_dict("records")]
