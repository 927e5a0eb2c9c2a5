"""Batch-level checks after quarantine: blocking ones stop consensus, warnings do not.

:data:`BATCH_HEALTH_CHECKS` is the one list of them (name, blocking, description); the
Dagster wiring declares its asset checks from it and :func:`batch_health` returns one outcome
per entry, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, ContractError
from annotation_pipeline.qa.gold import gold_answer_outcomes
from annotation_pipeline.qa.gx_bridge import GXRunner, validation_passed
from annotation_pipeline.qa.outcomes import CheckOutcome, QAThresholds, plain, records
from annotation_pipeline.qa.row_suite import suite_version_tag
from annotation_pipeline.qa.scorecards import lead_time_by_annotator

E = gx.expectations


@dataclass(frozen=True)
class BatchCheckSpec:
    """One batch-level check as the Dagster UI lists it before the first run."""
    name: str
    blocking: bool
    description: str

    @property
    def severity(self) -> str:
        return "ERROR" if self.blocking else "WARN"


BATCH_HEALTH_CHECKS: tuple[BatchCheckSpec, ...] = (
    BatchCheckSpec("accepted_rows_meet_contract", True,
                   "Rows left after quarantine still satisfy the annotations contract."),
    BatchCheckSpec("batch_completeness", True,
                   "Every non-gold task has scene answers from k distinct annotators."),
    BatchCheckSpec("gold_accuracy_overall", True,
                   "The median annotator's accuracy on hidden gold tasks is above the threshold "
                   "(class match; objects need IoU >= 0.5)."),
    BatchCheckSpec("quarantine_share", True, "The share of received records quarantined is below the limit."),
    BatchCheckSpec("annotator_gold_accuracy", False,
                   "Each annotator's gold accuracy is above the threshold (warning)."),
    BatchCheckSpec("lead_time_outliers", False, "Annotators whose time per task is mostly an outlier (warning)."),
)
_SPECS = {spec.name: spec for spec in BATCH_HEALTH_CHECKS}


def _outcome(name: str, passed: bool, description: str, metadata: dict[str, Any],
             examples: list[dict[str, Any]] | None = None) -> CheckOutcome:
    spec = _SPECS[name]
    return CheckOutcome(name, bool(passed), spec.blocking, spec.severity, description, metadata, examples or [])


def build_batch_suites(ontology: Any, thresholds: QAThresholds = QAThresholds()) -> dict[str, gx.ExpectationSuite]:
    """Batch-level suites (on small aggregated frames), named after the ontology version."""
    tag = suite_version_tag(ontology)
    t = thresholds
    return {
        "completeness": gx.ExpectationSuite(name=f"batch_completeness__{tag}", expectations=[
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="n_scene_answers", column_B="overlap", or_equal=True, mostly=t.min_complete_task_share,
                description="every non-gold task has scene answers from k distinct annotators")]),
        "gold_overall": gx.ExpectationSuite(name=f"gold_accuracy_overall__{tag}", expectations=[
            E.ExpectColumnMedianToBeBetween(column="gold_accuracy", min_value=t.min_gold_accuracy,
                                            description="median annotator gold accuracy of the batch "
                                                        f">= {t.min_gold_accuracy}")]),
        "gold_per_annotator": gx.ExpectationSuite(name=f"gold_accuracy_per_annotator__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(column="gold_accuracy", min_value=t.min_annotator_gold_accuracy,
                                            description=f"each annotator's gold accuracy >= {t.min_annotator_gold_accuracy}")]),
        "lead_time": gx.ExpectationSuite(name=f"lead_time_outliers__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(column="outlier_share", max_value=t.max_lead_time_outlier_share,
                                            description="share of an annotator's answers with |robust z| of "
                                                        f"log time > {t.lead_time_robust_z} stays <= {t.max_lead_time_outlier_share}")]),
    }


def batch_health(accepted: pd.DataFrame, quarantined: pd.DataFrame, received_count: int,
                 tasks: pd.DataFrame, gold: pd.DataFrame, ontology: Any, *,
                 thresholds: QAThresholds = QAThresholds(), docs_dir: Path | None = None,
                 run_name: str = "") -> list[CheckOutcome]:
    """One outcome per :data:`BATCH_HEALTH_CHECKS` entry, in that order.

    ``accepted``: annotations that passed intake and the row suite; ``quarantined``: every
    quarantine row of this batch (intake and qa); ``received_count``: records received.
    ``docs_dir``: the partition's Data Docs folder; this run's site is published as
    ``docs_dir/batch_health``.
    """
    suites = build_batch_suites(ontology, thresholds)
    with GXRunner(docs_dir / "batch_health" if docs_dir is not None else None) as runner:
        def validate(frame: pd.DataFrame, suite: str) -> tuple[bool, str | None]:
            return validation_passed(runner, frame, suites[suite], run_name)

        gold_checks = _gold_checks(accepted, tasks, gold, thresholds, validate)
        by_name = {o.name: o for o in [
            _contract_check(accepted, tasks),
            _completeness_check(accepted, tasks, validate),
            *gold_checks,
            _quarantine_share_check(accepted, quarantined, received_count, thresholds),
            _lead_time_check(accepted, thresholds, validate),
        ]}
    return [by_name[spec.name] for spec in BATCH_HEALTH_CHECKS]


def _contract_check(accepted: pd.DataFrame, tasks: pd.DataFrame) -> CheckOutcome:
    """What is left still meets the contract (blocking)."""
    problems = []
    try:
        ANNOTATIONS.validate(accepted)
    except ContractError as exc:
        problems.append(str(exc))
    n_dup_ids = int(accepted["annotation_id"].duplicated().sum()) if "annotation_id" in accepted else 0
    if n_dup_ids:
        problems.append(f"{n_dup_ids} duplicated annotation_id(s)")
    known = pd.MultiIndex.from_frame(tasks[["batch_id", "task_id"]].astype(str))
    unknown = ~pd.MultiIndex.from_frame(accepted[["batch_id", "task_id"]].astype(str)).isin(known) \
        if len(accepted) else np.array([], dtype=bool)
    if unknown.any():
        problems.append(f"{int(unknown.sum())} accepted row(s) reference tasks not in the handoff")
    return _outcome("accepted_rows_meet_contract", not problems,
                    "rows left after quarantine satisfy the annotations contract",
                    {"n_accepted": len(accepted), "problems": problems})


def _completeness_check(accepted: pd.DataFrame, tasks: pd.DataFrame, validate) -> CheckOutcome:
    """k distinct annotators' scene answers per non-gold task (blocking)."""
    scene = accepted[accepted["kind"] == "choice"]
    n_scene = scene.drop_duplicates(["batch_id", "task_id", "annotator_id"]).groupby(
        ["batch_id", "task_id"]).size().rename("n_scene_answers")
    per_task = tasks.loc[~tasks["is_gold"].fillna(False).to_numpy(dtype=bool),
                         ["batch_id", "task_id", "item_id", "overlap"]].copy()
    per_task["n_scene_answers"] = pd.MultiIndex.from_frame(per_task[["batch_id", "task_id"]]).map(n_scene) \
        if len(per_task) else []
    per_task = per_task.astype({"overlap": float}).assign(
        n_scene_answers=lambda d: d["n_scene_answers"].astype(float).fillna(0.0))
    incomplete = per_task[per_task["n_scene_answers"] < per_task["overlap"]]
    passed, url = validate(per_task[["n_scene_answers", "overlap"]], "completeness")
    return _outcome(
        "batch_completeness", passed, "every non-gold task has scene answers from k distinct annotators",
        {"n_tasks": len(per_task), "n_complete": len(per_task) - len(incomplete),
         "n_incomplete": len(incomplete), "data_docs": url or ""},
        records(incomplete[["task_id", "item_id", "overlap", "n_scene_answers"]]))


def _gold_checks(accepted: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame, t: QAThresholds,
                 validate) -> list[CheckOutcome]:
    """Gold accuracy of the batch (blocking) and per annotator (warning).

    The batch figure is the median over annotators: one spammer among five must not fail a
    batch whose other annotators are accurate (that is the per-annotator warning's job, and
    consensus down-weights them), while a batch where most annotators miss gold does fail.
    The pooled accuracy over all gold answers is reported beside it.
    """
    elements = gold_answer_outcomes(accepted, gold, iou_threshold=t.gold_iou)
    has_gold_tasks = bool(tasks["is_gold"].fillna(False).any())
    per_ann = (elements.groupby("annotator_id").agg(gold_elements=("correct", "size"),
                                                      gold_accuracy=("correct", "mean")).reset_index()
               if len(elements) else pd.DataFrame({"annotator_id": [], "gold_elements": [], "gold_accuracy": []}))
    if len(elements):
        passed, url = validate(per_ann[["gold_accuracy"]].astype(float), "gold_overall")
        accuracy, pooled = float(per_ann["gold_accuracy"].median()), float(elements["correct"].mean())
    else:
        passed, accuracy, pooled, url = not has_gold_tasks, float("nan"), float("nan"), None
    overall = _outcome(
        "gold_accuracy_overall", passed,
        f"median annotator gold accuracy of the batch >= {t.min_gold_accuracy} "
        f"(class match; objects need IoU >= {t.gold_iou})",
        {"gold_accuracy": plain(accuracy), "pooled_gold_accuracy": plain(pooled),
         "n_gold_elements": len(elements), "has_gold_tasks": has_gold_tasks,
         "min_gold_accuracy": t.min_gold_accuracy, "data_docs": url or "",
         "note": "" if len(elements) or not has_gold_tasks else "gold tasks were sent but none was answered"},
        records(per_ann.sort_values("gold_accuracy")) if len(per_ann) else [])
    low = per_ann[per_ann["gold_accuracy"] < t.min_annotator_gold_accuracy] if len(per_ann) else per_ann
    passed, url = validate(per_ann[["gold_accuracy"]].astype(float), "gold_per_annotator")
    per_annotator = _outcome(
        "annotator_gold_accuracy", passed, f"each annotator's gold accuracy >= {t.min_annotator_gold_accuracy}",
        {"n_annotators": len(per_ann), "n_below": len(low), "data_docs": url or "",
         "below": [str(a) for a in low["annotator_id"]] if len(low) else []},
        records(low))
    return [overall, per_annotator]


def _quarantine_share_check(accepted: pd.DataFrame, quarantined: pd.DataFrame, received_count: int,
                            t: QAThresholds) -> CheckOutcome:
    """Share of received records quarantined (blocking)."""
    share = len(quarantined) / received_count if received_count else 0.0
    return _outcome(
        "quarantine_share", share <= t.max_quarantine_share,
        f"share of received records quarantined <= {t.max_quarantine_share}",
        {"received": int(received_count), "quarantined": len(quarantined), "accepted": len(accepted),
         "share": round(share, 4),
         "by_reason": {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()}},
        records(quarantined["reason"].value_counts().rename_axis("reason").reset_index(name="n")))


def _lead_time_check(accepted: pd.DataFrame, t: QAThresholds, validate) -> CheckOutcome:
    """Annotators whose time per task is mostly an outlier (warning)."""
    timing = lead_time_by_annotator(accepted, t.lead_time_robust_z)
    passed, url = validate(timing[["outlier_share"]].astype(float), "lead_time")
    flagged = timing[timing["outlier_share"] > t.max_lead_time_outlier_share]
    return _outcome(
        "lead_time_outliers", passed,
        "annotators whose time per task is mostly an outlier (robust z-score of log seconds)",
        {"n_annotators": len(timing), "n_flagged": len(flagged), "data_docs": url or "",
         "median_lead_time_s": plain(float(timing["median_lead_time_s"].median())) if len(timing) else None},
        records(flagged))


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """The outcomes that must stop consensus for this partition."""
    return [o for o in outcomes if o.blocking and not o.passed]
