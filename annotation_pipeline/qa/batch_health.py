"""Batch-level checks after quarantine: blocking ones stop consensus, warnings do not.

:data:`BATCH_HEALTH_CHECKS` is the one list of them (name, blocking, description); the
Dagster wiring declares its asset checks from it and :func:`batch_health` returns one outcome
per entry, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, ContractError
from annotation_pipeline.qa.evidence import (
    FAIL,
    INSUFFICIENT,
    PASS,
    Evidence,
    median_annotator_evidence,
    proportion_evidence,
)
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
                   "The annotator at the median of the gold answers clears the accuracy bar on hidden gold "
                   "tasks (class match; objects need IoU >= 0.5). Blocks only when the 95% interval lies "
                   "below the bar; with too little gold it warns 'insufficient gold' and the next batch "
                   "carries more gold tasks."),
    BatchCheckSpec("quarantine_share", True,
                   "The share of received records quarantined is below the limit. Blocks only when the "
                   "95% interval lies above it; with too few records it warns."),
    BatchCheckSpec("annotator_gold_accuracy", False,
                   "No annotator is, at 95% confidence, below the gold accuracy bar (warning)."),
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
        # The gates' rule, stated to GX: the upper end of the interval must reach the bar.
        "gold_overall": gx.ExpectationSuite(name=f"gold_accuracy_overall__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(
                column="interval_upper", min_value=t.min_gold_accuracy,
                description=f"upper {t.gate_confidence:.0%} bound of the median annotator's gold accuracy "
                            f">= {t.min_gold_accuracy}")]),
        "gold_per_annotator": gx.ExpectationSuite(name=f"gold_accuracy_per_annotator__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(
                column="upper", min_value=t.min_annotator_gold_accuracy,
                description=f"upper {t.gate_confidence:.0%} bound of each annotator's gold accuracy "
                            f">= {t.min_annotator_gold_accuracy}")]),
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
    gx_results: dict[str, list[dict[str, Any]]] = {}
    with GXRunner(docs_dir / "batch_health" if docs_dir is not None else None) as runner:
        def validate(frame: pd.DataFrame, suite: str) -> tuple[bool, str | None]:
            passed, url, gx_results[suite] = validation_passed(runner, frame, suites[suite], run_name)
            return passed, url

        gold_checks = _gold_checks(accepted, tasks, gold, thresholds, validate)
        by_name = {o.name: o for o in [
            _contract_check(accepted, tasks),
            _completeness_check(accepted, tasks, validate),
            *gold_checks,
            _quarantine_share_check(accepted, quarantined, received_count, thresholds),
            _lead_time_check(accepted, thresholds, validate),
        ]}
    return [replace(by_name[spec.name], gx_results=gx_results.get(_SUITE_OF_CHECK.get(spec.name, ""), []))
            for spec in BATCH_HEALTH_CHECKS]


# which suite of ``build_batch_suites`` each check validates (the others are judged in pandas alone)
_SUITE_OF_CHECK = {"batch_completeness": "completeness", "gold_accuracy_overall": "gold_overall",
                   "annotator_gold_accuracy": "gold_per_annotator", "lead_time_outliers": "lead_time"}


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


def gold_by_annotator(elements: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: gold answers (gold tasks answered), gold elements judged and right, accuracy."""
    if not len(elements):
        return pd.DataFrame({"annotator_id": pd.Series(dtype="string"), "gold_answers": pd.Series(dtype="int64"),
                             "gold_elements": pd.Series(dtype="int64"), "gold_correct": pd.Series(dtype="int64"),
                             "gold_accuracy": pd.Series(dtype=float)})
    per = elements.groupby("annotator_id").agg(gold_answers=("item_id", "nunique"), gold_elements=("correct", "size"),
                                               gold_correct=("correct", "sum")).reset_index()
    return per.assign(gold_accuracy=per["gold_correct"] / per["gold_elements"])


def gold_accuracy_gate(per_annotator: pd.DataFrame, t: QAThresholds) -> Evidence:
    """The batch gate: does the annotator at the median of the gold answers clear the bar?"""
    return median_annotator_evidence(per_annotator["gold_correct"].to_numpy(), per_annotator["gold_elements"].to_numpy(),
                                     per_annotator["gold_answers"].to_numpy(), threshold=t.min_gold_accuracy,
                                     confidence=t.gate_confidence)


def annotator_gold_evidence(per_annotator: pd.DataFrame, t: QAThresholds) -> pd.DataFrame:
    """Per annotator: estimate, interval and decision against the per-annotator bar."""
    judged = [proportion_evidence(int(k), int(n), threshold=t.min_annotator_gold_accuracy,
                                  confidence=t.gate_confidence, direction="at_least")
              for k, n in zip(per_annotator["gold_correct"], per_annotator["gold_elements"])]  # one per annotator
    return per_annotator.assign(lower=[e.lower for e in judged], upper=[e.upper for e in judged],
                                decision=[e.decision for e in judged])


def gold_tasks_for_next_batch(evidence: Evidence, tasks: pd.DataFrame, t: QAThresholds) -> int:
    """Gold tasks the next batch should carry so its gate can decide (0: today's default will do)."""
    if evidence.decision != INSUFFICIENT:
        return 0
    needed = evidence.needed or t.gold_answers_when_none
    overlap = float(tasks["overlap"].median()) if len(tasks) else 1.0
    return math.ceil(needed / max(overlap, 1.0))


def _gold_checks(accepted: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame, t: QAThresholds,
                 validate) -> list[CheckOutcome]:
    """Gold accuracy of the batch (blocking) and per annotator (warning), both judged on evidence.

    The batch figure is the median annotator, weighted by their share of the gold answers: one
    spammer among five must not fail a batch whose other annotators are accurate (that is the
    per-annotator warning's job, and consensus down-weights them), while a batch where most
    answers come from annotators who miss gold does fail. The pooled accuracy is reported beside it.
    """
    elements = gold_answer_outcomes(accepted, gold, iou_threshold=t.gold_iou)
    has_gold_tasks = bool(tasks["is_gold"].fillna(False).any())
    per_ann = annotator_gold_evidence(gold_by_annotator(elements), t)
    evidence = gold_accuracy_gate(per_ann, t)
    gx_frame = pd.DataFrame({"interval_upper": [evidence.upper]}) if evidence.n else pd.DataFrame()
    _, url = validate(gx_frame, "gold_overall")
    next_gold = gold_tasks_for_next_batch(evidence, tasks, t)
    metadata = {**evidence.as_metadata("gold_answers"), "gold_accuracy": plain(evidence.estimate),
                "pooled_gold_accuracy": plain(float(elements["correct"].mean()) if len(elements) else None),
                "n_gold_elements": len(elements), "has_gold_tasks": has_gold_tasks,
                "min_gold_accuracy": t.min_gold_accuracy, "gold_tasks_next_batch": next_gold,
                "data_docs": url or "", "message": _gold_message(evidence, next_gold, has_gold_tasks)}
    if evidence.decision == FAIL:
        metadata["what_to_do"] = ("read the annotators' gold answers (failing_examples, annotator_gold_accuracy); ask "
                                  "the vendor to rework the batch with other annotators, then rerun this partition")
    overall = _gate_outcome(
        "gold_accuracy_overall", evidence,
        f"the annotator at the median of the gold answers is right on >= {t.min_gold_accuracy} of gold elements at "
        f"{t.gate_confidence:.0%} confidence (class match; objects need IoU >= {t.gold_iou})",
        metadata, records(per_ann.sort_values("gold_accuracy")))
    low = per_ann[per_ann["decision"] == FAIL]
    passed, url = validate(per_ann[["upper"]].astype(float), "gold_per_annotator")
    per_annotator = _outcome(
        "annotator_gold_accuracy", passed,
        f"no annotator is, at {t.gate_confidence:.0%} confidence, below {t.min_annotator_gold_accuracy} gold accuracy",
        {"n_annotators": len(per_ann), "n_below": len(low), "data_docs": url or "",
         "below": [str(a) for a in low["annotator_id"]],
         "undecided": [str(a) for a in per_ann.loc[per_ann["decision"] == INSUFFICIENT, "annotator_id"]]},
        records(low))
    return [overall, per_annotator]


def _gold_message(evidence: Evidence, next_gold: int, has_gold_tasks: bool) -> str:
    if evidence.decision != INSUFFICIENT:
        return ""
    if evidence.n == 0:
        what = "gold tasks were sent but none was answered" if has_gold_tasks else "no gold task in this batch"
        return f"insufficient gold: {what}; the next batch carries {next_gold} gold tasks"
    return (f"insufficient gold: {evidence.n} gold answers cannot tell at {evidence.confidence:.0%} confidence; "
            f"about {evidence.needed} would, so the next batch carries {next_gold} gold tasks")


def _gate_outcome(name: str, evidence: Evidence, description: str, metadata: dict[str, Any],
                  examples: list[dict[str, Any]]) -> CheckOutcome:
    """A blocking gate: fails (ERROR) on evidence, warns (WARN, does not block) when it cannot tell."""
    severity = "WARN" if evidence.decision == INSUFFICIENT else "ERROR"
    return CheckOutcome(name, evidence.decision == PASS, _SPECS[name].blocking, severity, description,
                        metadata, examples)


def _quarantine_share_check(accepted: pd.DataFrame, quarantined: pd.DataFrame, received_count: int,
                            t: QAThresholds) -> CheckOutcome:
    """Share of received records quarantined (blocking when the evidence puts it above the limit)."""
    evidence = proportion_evidence(len(quarantined), int(received_count), threshold=t.max_quarantine_share,
                                   confidence=t.gate_confidence, direction="at_most")
    share = len(quarantined) / received_count if received_count else 0.0
    metadata = {**evidence.as_metadata("records"), "received": int(received_count),
                "quarantined": len(quarantined), "accepted": len(accepted), "share": round(share, 4),
                "by_reason": {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()},
                "message": "" if evidence.decision != INSUFFICIENT else
                f"insufficient evidence: {received_count} records cannot tell whether the share exceeds "
                f"{t.max_quarantine_share} at {t.gate_confidence:.0%} confidence (about {evidence.needed} would)"}
    if evidence.decision == FAIL:
        metadata["what_to_do"] = ("read the reasons in the quarantine asset; have the vendor fix and resend the "
                                  "files (or fix the ontology if the labels are legitimately new), then rerun")
    if not received_count:  # nothing received: nothing quarantined either, nothing to stop
        evidence = Evidence(None, 0.0, 1.0, t.gate_confidence, t.max_quarantine_share, "at_most", PASS, 0, 0)
    return _gate_outcome(
        "quarantine_share", evidence,
        f"share of received records quarantined <= {t.max_quarantine_share} unless the evidence puts it above "
        f"at {t.gate_confidence:.0%} confidence", metadata,
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
    """The outcomes that must stop consensus for this partition (a gate that cannot tell warns)."""
    return [o for o in outcomes if o.blocking and not o.passed and o.severity == "ERROR"]
