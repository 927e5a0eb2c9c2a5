"""The program's tables beside the lifecycle: vendor figures, auto-accept, the review loop."""

from __future__ import annotations

from annotation_pipeline.contracts.base import _BOX, TableContract, _c
from annotation_pipeline.contracts.lifecycle import CONSENSUS_LABELS

ALL_CONTRACTS: list[TableContract] = []


VENDOR_SCORECARDS = TableContract(
    "vendor_scorecards",
    "The program manager's figures for one day, one row per vendor and per annotator: what the labels "
    "cost, how fast they came back, how much had to be redone and how good they were. Counts are kept "
    "beside every ratio so weeks add up (vendor.scorecards.weekly_trends).",
    {
        "scope": _c("string", "vendor or annotator"),
        "partition_date": _c("string", "day of the batches, YYYY-MM-DD"),
        "vendor": _c("string", "vendor name"),
        "annotator_id": _c("string", "annotator (empty on a vendor row)", True),
        "n_submitted": _c("int64", "labels returned: accepted + quarantined"),
        "n_accepted": _c("int64", "labels accepted by intake and QA"),
        "n_quarantined": _c("int64", "records quarantined by intake or QA (a vendor row also counts "
                                     "records no annotator could be read from)"),
        "n_overturned": _c("int64", "accepted answers behind review candidates a reviewer overrode or rejected"),
        "rework_rate": _c("float64", "(quarantined + overturned) / submitted", True),
        "cost": _c("float64", "what the vendor bills for the labels returned (TaskPrices)"),
        "cost_per_accepted_label": _c("float64", "cost / accepted labels (empty without any)", True),
        "n_tasks": _c("int64", "tasks answered (one annotator's answer to one task)"),
        "work_hours": _c("float64", "annotator working time: sum of lead times, hours"),
        "tasks_per_hour": _c("float64", "throughput: tasks answered per working hour (empty without lead times)", True),
        "n_batches": _c("int64", "batches answered"),
        "turnaround_hours": _c("float64", "mean over batches of sent -> returned, hours (empty when unknown)", True),
        "gold_judged": _c("int64", "gold elements judged (scene and objects of hidden gold tasks)"),
        "gold_correct": _c("int64", "of those, right"),
        "gold_accuracy": _c("float64", "gold_correct / gold_judged (empty without gold)", True),
        "agreement_judged": _c("int64", "scene choices on items with a consensus label"),
        "agreement_with_consensus": _c("float64", "share of those equal to the consensus label", True),
    },
)
ALL_CONTRACTS.append(VENDOR_SCORECARDS)
# --- model-assisted labeling: auto-accept (issue 15) ---

AUTO_ACCEPT_EVIDENCE = TableContract(
    "auto_accept_evidence",
    "The pre-label model's precision on held-out gold, per kind, class and score band: what auto-accept "
    "is allowed on.",
    {
        "model_version": _c("string", "pre-label model measured"),
        "kind": _c("string", "choice or box"),
        "label": _c("string", "predicted class"),
        "band": _c("string", "calibrated score band, e.g. 0.95-0.99"),
        "n": _c("int64", "pre-labels of the cell on held-out gold items"),
        "correct": _c("int64", "of them right (same choice; same class at IoU >= 0.5)"),
        "precision": _c("float64", "correct / n"),
        "measured_on": _c("string", "which gold, e.g. '60 held-out gold items'"),
    },
)

AUTO_ACCEPTED_LABELS = TableContract(
    "auto_accepted_labels",
    "Pre-labels released without a vendor (label source: machine), each with the evidence it was "
    "accepted on; a seeded share still goes to the vendor as a check.",
    {
        "item_id": _c("string", "item"),
        "kind": _c("string", "choice or box"),
        "label": _c("string", "ontology class"),
        **_BOX,
        "score": _c("float64", "calibrated model score"),
        "model_version": _c("string", "pre-label model that made it"),
        "score_band": _c("string", "score band of the evidence"),
        "measured_precision": _c("float64", "precision of that class and band on held-out gold"),
        "n_gold": _c("int64", "held-out gold labels behind that precision"),
        "sent_for_check": _c("boolean", "the item still goes to the vendor, to check the model"),
    },
)

ALL_CONTRACTS += [AUTO_ACCEPT_EVIDENCE, AUTO_ACCEPTED_LABELS]


# ---- the review loop (issue 17): queued candidates go to reviewers, their decisions come back
_REVIEWED = {"item_id": _c("string", "item"), "kind": _c("string", "choice, box or polygon"), **_BOX,
             "confidence": _c("float64", "consensus confidence of the candidate (gold: empty)", True),
             "n_assigned": _c("Int64", "annotators who saw the item (gold: 0)"),
             "annotation_ids": _c("string", "answers behind the candidate ('' for gold)")}
REVIEW_TASKS = TableContract("review_tasks", "Our side of a day's review tasks: which task is which candidate (queued, "
                             "or a released label audited), which are hidden gold. Reviewers see tasks.json only.", {
    "review_task_id": _c("string", "task id the reviewer sees (rv-<hash>), stable across reruns"),
    "partition_date": _c("string", "day of the review queue the task comes from"),
    **_REVIEWED, "label": _c("string", "candidate label shown to the reviewer"),
    "reason": _c("string", "review_queue.reason; audit_answers_quarantined / audit_low_confidence; gold"),
    "is_gold": _c("boolean", "hidden gold task"), "gold_label": _c("string", "the known answer (gold only)", True),
    "image_file": _c("string", "image file inside the review folder")})
REVIEW_DECISIONS = TableContract("review_decisions", "Accepted review decisions: who, when, what, why, and the "
                                 "candidate decided. The release applies the latest decision of each non-gold task.", {
    "decision_id": _c("string", "stable id: hash of task, reviewer, time, decision, value and reason"),
    "review_task_id": _c("string", "review task decided"), **_REVIEWED,
    "candidate_label": _c("string", "label the reviewer was shown"),
    "decision": _c("string", "confirm, override or reject"), "new_label": _c("string", "override's value", True),
    "final_label": _c("string", "label after the decision (empty after a reject)", True),
    "reviewer_id": _c("string", "who decided"), "decided_at": _c("string", "when, ISO 8601 UTC"),
    "reason": _c("string", "why, as written, personal data redacted ('' when none)"),
    "is_gold": _c("boolean", "decision on a hidden gold task"),
    "correct": _c("boolean", "gold only: the decision gave the known answer", True),
    "superseded": _c("boolean", "a later decision on the same task replaces this one"),
    "source_file": _c("string", "decision file in the returns folder"), "source_sha256": _c("string", "its sha256")})
REVIEWER_ACCURACY = TableContract("reviewer_accuracy", "Reviewer accuracy on a day's hidden gold review tasks.", {
    "reviewer_id": _c("string", "reviewer"), "n_gold": _c("int64", "gold tasks decided (latest decision each)"),
    "n_correct": _c("int64", "of those, right"), "accuracy": _c("float64", "n_correct / n_gold", True)})
RELEASED_LABELS = TableContract("released_labels", "A day's labels as a release takes them: consensus labels with "
                                "review decisions applied (the release appends partition_date).", {
    **CONSENSUS_LABELS.columns, "label_source": _c("string", "consensus (vendor answers), review (confirmed or overridden by a "
                                                        "reviewer) or machine (auto-accepted pre-label)"),
    "review_decision_id": _c("string", "the review decision applied (label_source review)", True),
    "auto_accept_evidence": _c("string", "score band, held-out gold precision and model (label_source machine)", True)})
ALL_CONTRACTS += [REVIEW_TASKS, REVIEW_DECISIONS, REVIEWER_ACCURACY, RELEASED_LABELS]
