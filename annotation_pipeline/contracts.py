"""One contract per table: column names, dtypes, nullability and meaning, written once.

Every stage conforms its output with ``CONTRACT.conform(df)`` before it is persisted and
checks its input with ``CONTRACT.validate(df)``; tests use the same objects. Geometry is in
pixel coordinates: boxes as ``x_min, y_min, x_max, y_max`` (vectorizable), polygons as WKB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class ContractError(ValueError):
    """A table does not match its contract; the message names table, column and problem."""


def missing_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The ``columns`` that ``frame`` lacks, in the order expected."""
    present = set(map(str, frame.columns))
    return [c for c in columns if c not in present]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str, hint: str | None = None) -> None:
    """Raise ContractError when ``frame`` lacks any of ``columns``: the one missing-column check.

    The message names ``what`` was read (a table, a file), the missing columns and the full
    list expected, then ``hint`` (what to do), so a user can fix the input without the code.
    """
    expected = list(columns)
    missing = missing_columns(frame, expected)
    if missing:
        message = f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(expected)}"
        raise ContractError(f"{message}; {hint}" if hint else message)


@dataclass(frozen=True)
class Column:
    dtype: str  # a pandas dtype string: "string", "float64", "Int64", "boolean", "object", ...
    description: str
    nullable: bool = False


@dataclass(frozen=True)
class TableContract:
    name: str
    description: str
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({n: pd.Series(dtype=c.dtype) for n, c in self.columns.items()})

    def conform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Select the contract's columns in order, cast dtypes, then validate."""
        require_columns(df, self.columns, self.name)
        out = pd.DataFrame(
            {n: df[n].astype(c.dtype) if str(df[n].dtype) != c.dtype else df[n]
             for n, c in self.columns.items()},
            index=df.index,
        ).reset_index(drop=True)
        self.validate(out)
        return out

    def validate(self, df: pd.DataFrame) -> None:
        require_columns(df, self.columns, self.name)
        problems = []
        for n, c in self.columns.items():
            if str(df[n].dtype) != c.dtype:
                problems.append(f"column {n!r} has dtype {df[n].dtype}, expected {c.dtype}")
            if not c.nullable and len(df) and df[n].isna().any():
                problems.append(f"column {n!r} has {int(df[n].isna().sum())} null(s) but is not nullable")
        if problems:
            raise ContractError(f"{self.name}: " + "; ".join(problems))

    def markdown(self) -> str:
        """A table of the contract for asset descriptions in the Dagster UI."""
        rows = [f"| `{n}` | {c.dtype}{'?' if c.nullable else ''} | {c.description} |"
                for n, c in self.columns.items()]
        return "| column | dtype | meaning |\n|---|---|---|\n" + "\n".join(rows)


def _c(dtype: str, description: str, nullable: bool = False) -> Column:
    return Column(dtype, description, nullable)


_BOX = {
    "x_min": _c("float64", "left edge, pixels", True),
    "y_min": _c("float64", "top edge, pixels", True),
    "x_max": _c("float64", "right edge, pixels", True),
    "y_max": _c("float64", "bottom edge, pixels", True),
}

RAW_ITEMS = TableContract(
    "raw_items",
    "Raw items of one daily partition, one row per distinct content hash. Pseudonymous: the "
    "original file names and sidecar metadata are in LANDING_ORIGINALS, in the restricted store.",
    {
        "item_id": _c("string", "sha256 of the raw file bytes (first 16 hex chars)"),
        "partition_date": _c("string", "daily partition key, YYYY-MM-DD"),
        "raw_path": _c("string", "stored raw file, relative to the data root: raw/<date>/<item_id>.<ext>"),
        "media_type": _c("string", "image/png, image/jpeg, ..."),
        "width": _c("Int64", "image width in pixels"),
        "height": _c("Int64", "image height in pixels"),
        "byte_size": _c("Int64", "size of the raw file"),
    },
)

LANDING_ORIGINALS = TableContract(
    "landing_originals",
    "Restricted store only (0600): every landing entry under its original name, with the sidecar "
    "as received for accepted items. Maps the pseudonymous entry names used everywhere else back "
    "to the uploads, for an auditor with restricted access; anonymization reads the sidecars.",
    {
        "entry": _c("string", "pseudonymous entry name (landing_<12 hex>) used in quarantine and logs"),
        "partition_date": _c("string", "daily partition key"),
        "source_file": _c("string", "original name relative to the landing folder (undecodable bytes "
                                    "as \\xNN escapes)"),
        "outcome": _c("string", "accepted, duplicate or quarantined"),
        "item_id": _c("string", "content hash, when the file could be read", True),
        "metadata_json": _c("string", "sidecar metadata as received (accepted items)", True),
        "caption": _c("string", "free text as received (accepted items)", True),
    },
)

ANONYMIZED_ITEMS = TableContract(
    "anonymized_items",
    "Items safe to show a vendor: pixels re-encoded without EXIF, faces/plates blurred, "
    "personal data in metadata and text redacted or pseudonymized.",
    {
        "item_id": _c("string", "same id as raw_items"),
        "partition_date": _c("string", "daily partition key"),
        "image_path": _c("string", "anonymized image path, relative to the data root"),
        "width": _c("Int64", "image width in pixels"),
        "height": _c("Int64", "image height in pixels"),
        "metadata_json": _c("string", "metadata after redaction / pseudonymization"),
        "caption": _c("string", "free text after redaction", True),
        "n_redactions": _c("Int64", "number of redactions applied to this item"),
    },
)

REDACTION_LOG = TableContract(
    "redaction_log",
    "One row per redaction: what kind, where, by which detector, for the auditor.",
    {
        "item_id": _c("string", "item the redaction was applied to"),
        "kind": _c("string", "email, phone, iban, card, ip, national_id, name, face, plate, exif, region"),
        "field": _c("string", "metadata field, 'caption', or 'image'"),
        "count": _c("Int64", "how many occurrences"),
        **_BOX,
        "action": _c("string", "redact, pseudonymize, blur, strip"),
        "detector": _c("string", "detector name"),
        "detector_version": _c("string", "detector version"),
    },
)

PRELABELS = TableContract(
    "prelabels",
    "Model-assisted labels: one scene choice per item and proposed object boxes, with scores.",
    {
        "item_id": _c("string", "item"),
        "kind": _c("string", "choice or box"),
        "label": _c("string", "ontology class"),
        **_BOX,
        "score": _c("float64", "model score in [0, 1]"),
        "model_version": _c("string", "version of the pre-labeling model"),
    },
)

LABELING_QUEUE = TableContract(
    "labeling_queue",
    "Items chosen for human labeling by active learning under a budget, most useful first.",
    {
        "item_id": _c("string", "item"),
        "partition_date": _c("string", "partition"),
        "priority": _c("Int64", "rank, 1 = label first"),
        "uncertainty": _c("float64", "active-learning score (higher = more informative)"),
        "reason": _c("string", "why it was selected (uncertainty, campaign, ...)"),
        "campaign_id": _c("string", "relabel campaign that put it first (none: picked by active learning)", True),
        "uncertainty_rank": _c("Int64", "rank by model uncertainty among the day's candidates, 1 = most", True),
        "diversity_rank": _c("Int64", "when picked: rank by distance to items already queued among the shortlisted "
                                      "most uncertain candidates, 1 = farthest", True),
    },
)

ANNOTATIONS = TableContract(
    "annotations",
    "Vendor answers in one shape, pixel coordinates, every row traceable to its file.",
    {
        "annotation_id": _c("string", "stable id: hash of source file content + position"),
        "batch_id": _c("string", "vendor batch"),
        "task_id": _c("string", "vendor task id"),
        "item_id": _c("string", "item"),
        "annotator_id": _c("string", "annotator (pseudonymous vendor id)"),
        "vendor": _c("string", "vendor name"),
        "kind": _c("string", "choice, box or polygon"),
        "label": _c("string", "ontology class"),
        **_BOX,
        "geometry_wkb": _c("object", "polygon as WKB bytes (polygons only)", True),
        "image_width": _c("float64", "image width the annotator saw, pixels"),
        "image_height": _c("float64", "image height the annotator saw, pixels"),
        "lead_time_s": _c("float64", "seconds the annotator spent on the task", True),
        "is_gold": _c("boolean", "task is a hidden gold task"),
        "source_file": _c("string", "vendor return file (name inside the inbox)"),
        "source_sha256": _c("string", "sha256 of the vendor return file"),
        "ontology_version": _c("string", "ontology version the task was sent with"),
        "guidelines_version": _c("string", "labeling guidelines version"),
        "model_version": _c("string", "pre-label model version shown to the annotator"),
    },
)

QUARANTINE = TableContract(
    "quarantine",
    "Everything received but not accepted, with the stage and a reason a person can act on.",
    {
        "stage": _c("string", "ingestion, anonymization, intake, qa"),
        "partition_date": _c("string", "partition"),
        "source_file": _c("string", "file the record came from"),
        "record_ref": _c("string", "row / task / result inside the file, '' for a whole file"),
        "reason": _c("string", "machine-readable reason code"),
        "detail": _c("string", "what was wrong and what to do"),
        "item_id": _c("string", "item, when known", True),
        "annotator_id": _c("string", "annotator, when known", True),
        "annotation_id": _c("string", "annotation, when known", True),
    },
)

CONSENSUS_LABELS = TableContract(
    "consensus_labels",
    "Merged labels: one scene label per item and merged objects, each with its evidence.",
    {
        "item_id": _c("string", "item"),
        "kind": _c("string", "choice, box or polygon"),
        "label": _c("string", "ontology class"),
        **_BOX,
        "geometry_wkb": _c("object", "merged polygon as WKB (polygons only)", True),
        "confidence": _c("float64", "posterior / agreement-based confidence in [0, 1]"),
        "n_annotators": _c("Int64", "annotators supporting this label / object"),
        "n_assigned": _c("Int64", "annotators who saw the item"),
        "method": _c("string", "aggregation method"),
        "annotation_ids": _c("string", "space-separated annotation_ids merged here (provenance)"),
    },
)

REVIEW_QUEUE = TableContract(
    "review_queue",
    "Consensus candidates not released: queued for a reviewer by expected gain, deferred over budget, or dismissed with a reason. Nothing is overwritten.",
    {
        "item_id": _c("string", "item"),
        "kind": _c("string", "choice, box or polygon"),
        "label": _c("string", "best label so far", True),
        **_BOX,
        "confidence": _c("float64", "confidence of the best label", True),
        "n_annotators": _c("Int64", "annotators supporting it"),
        "n_assigned": _c("Int64", "annotators who saw the item"),
        "reason": _c("string", "low_confidence, below_quorum, unreliable_annotators_only, "
                               "outvoted_by_merged_object"),
        "status": _c("string", "queued (a reviewer decides), deferred (over the partition's review "
                               "budget: kept, not released) or dismissed (automatically, for the reason)"),
        "expected_gain": _c("float64", "expected label-accuracy gain of reviewing it (ranking key)"),
        "annotation_ids": _c("string", "annotation_ids involved"),
    },
)

AGREEMENT_METRICS = TableContract(
    "agreement_metrics",
    "Agreement figures in long form: scope (batch, class, annotator), key, metric, value.",
    {
        "scope": _c("string", "batch, class or annotator"),
        "key": _c("string", "batch id, class name or annotator id"),
        "metric": _c("string", "cohen_kappa, fleiss_kappa, krippendorff_alpha, mean_iou, ..."),
        "value": _c("float64", "the figure (NaN when undefined)", True),
        "n": _c("Int64", "how many answers it rests on"),
    },
)

VENDOR_TASKS = TableContract(
    "vendor_tasks",
    "Our side of a vendor handoff: which task is which item, and which tasks are hidden gold. "
    "Never sent to the vendor (the vendor sees task ids and anonymized images only).",
    {
        "batch_id": _c("string", "vendor batch"),
        "task_id": _c("string", "task id the vendor sees"),
        "item_id": _c("string", "item behind the task"),
        "is_gold": _c("boolean", "hidden gold task (answer known)"),
        "vendor": _c("string", "vendor name"),
        "image_file": _c("string", "image file name inside the batch folder"),
        "image_width": _c("float64", "image width, pixels"),
        "image_height": _c("float64", "image height, pixels"),
        "overlap": _c("Int64", "how many different annotators must answer the task"),
        "ontology_version": _c("string", "ontology version"),
        "guidelines_version": _c("string", "guidelines version"),
        "model_version": _c("string", "pre-label model version"),
    },
)

GOLD_LABELS = TableContract(
    "gold_labels",
    "Known answers of gold items, used to score annotators on hidden gold tasks.",
    {
        "item_id": _c("string", "gold item"),
        "kind": _c("string", "choice, box or polygon"),
        "label": _c("string", "ontology class"),
        **_BOX,
        "geometry_wkb": _c("object", "polygon as WKB (polygons only)", True),
    },
)

ALL_CONTRACTS = [
    RAW_ITEMS, ANONYMIZED_ITEMS, REDACTION_LOG, PRELABELS, LABELING_QUEUE, ANNOTATIONS,
    VENDOR_TASKS, GOLD_LABELS,
    QUARANTINE, CONSENSUS_LABELS, REVIEW_QUEUE, AGREEMENT_METRICS,
]


PREDICTION_LOG = TableContract(
    "prediction_log",
    "Predictions a production model logged, as the serving team writes them under "
    "monitoring/predictions/<date>/ (and, for its validation set, monitoring/reference/<model_version>).",
    {
        "logged_at": _c("string", "when the prediction was made, ISO 8601"),
        "model_version": _c("string", "the model that predicted"),
        "image_path": _c("string", "the production image, relative to the data root"),
        "predicted_label": _c("string", "predicted scene class"),
        "confidence": _c("float64", "the model's probability for its prediction, in [0, 1]"),
    },
)

DRIFT_SIGNALS = TableContract(
    "drift_signals",
    "One day of production predictions against the model's reference predictions: one row per "
    "model version and metric.",
    {
        "window": _c("string", "the day judged, YYYY-MM-DD"),
        "model_version": _c("string", "model whose predictions were compared"),
        "metric": _c("string", "label_psi (population stability of predicted labels) or confidence_ks"),
        "value": _c("float64", "PSI, or the Kolmogorov-Smirnov statistic D"),
        "threshold": _c("float64", "drift above this value"),
        "p_value": _c("float64", "KS test p-value (empty for PSI)", True),
        "drifted": _c("boolean", "this metric says the model's inputs have shifted"),
        "n_reference": _c("Int64", "reference predictions"),
        "n_current": _c("Int64", "predictions of the day"),
    },
)

RELABEL_CAMPAIGN = TableContract(
    "relabel_campaign",
    "Production images a drift campaign sent to labeling: landed for ingestion, labeled first.",
    {
        "campaign_id": _c("string", "drift-<day>: one campaign per drifted day"),
        "item_id": _c("string", "sha256 of the image bytes (first 16 hex chars), as ingestion names it"),
        "image_path": _c("string", "production image it was copied from"),
        "landing_file": _c("string", "where it landed, relative to the data root"),
        "model_version": _c("string", "model whose prediction drifted"),
        "predicted_label": _c("string", "what the model predicted"),
        "confidence": _c("float64", "how sure it was"),
        "reason": _c("string", "why this image was chosen"),
        "priority": _c("Int64", "rank within the campaign, 1 = label first"),
    },
)


ANNOTATOR_SCORECARDS = TableContract(
    "annotator_scorecards",
    "One row per annotator of a partition: volume, rework, gold accuracy, speed and agreement, "
    "for the program manager and the auditor.",
    {
        "annotator_id": _c("string", "annotator (pseudonymous vendor id)"),
        "n_answers": _c("int64", "rows submitted: accepted + quarantined"),
        "n_tasks": _c("int64", "distinct tasks with an accepted answer"),
        "gold_tasks": _c("int64", "hidden gold tasks answered"),
        "gold_accuracy": _c("float64", "share of gold answers judged correct (empty without gold)", True),
        "rework_rate": _c("float64", "share of the annotator's rows quarantined"),
        "median_lead_time_s": _c("float64", "median seconds per task (empty when the vendor sent none)", True),
        "agreement_with_consensus": _c("float64", "share of scene choices equal to the consensus label "
                                                  "(empty until consensus exists)", True),
    },
)

PROVENANCE = TableContract(
    "provenance",
    "One row per released label and vendor answer behind it, joined to the raw item: the auditor's "
    "trace. A release stores it cumulatively, with the label's partition_date appended.",
    {
        "item_id": _c("string", "item: sha256 of the raw file bytes (first 16 hex chars)"),
        "label_kind": _c("string", "choice, box or polygon"),
        "label": _c("string", "released label"),
        "annotation_id": _c("string", "vendor answer merged into the label"),
        "annotator_id": _c("string", "who answered", True),
        "vendor": _c("string", "vendor name", True),
        "batch_id": _c("string", "vendor batch", True),
        "task_id": _c("string", "vendor task id", True),
        "answer_label": _c("string", "what the annotator answered", True),
        "source_file": _c("string", "vendor return file the answer came from", True),
        "source_sha256": _c("string", "sha256 of that return file", True),
        "raw_path": _c("string", "stored raw file, relative to the data root", True),
        "raw_partition_date": _c("string", "day the raw file was ingested", True),
        "ontology_version": _c("string", "ontology version of the task", True),
        "guidelines_version": _c("string", "guidelines version of the task", True),
        "model_version": _c("string", "pre-label model shown to the annotator", True),
    },
)

INTAKE_FILES = TableContract(
    "intake_files",
    "One row per vendor return file given to intake: its identity, format, status and row counts "
    "(n_received = n_accepted + n_quarantined).",
    {
        "source_file": _c("string", "file name inside the inbox (as given when outside it)"),
        "source_sha256": _c("string", "sha256 of the file (empty when it could not be read)", True),
        "batch_id": _c("string", "batch folder the file sits in (empty when outside the inbox)", True),
        "format": _c("string", "label_studio or coco (empty when not recognized)", True),
        "status": _c("string", "accepted, quarantined or duplicate_file"),
        "n_received": _c("int64", "records in the file (1 for an unusable file)"),
        "n_accepted": _c("int64", "records accepted"),
        "n_quarantined": _c("int64", "records quarantined"),
        "reason": _c("string", "reason code for a whole-file status, '' otherwise"),
        "detail": _c("string", "what was wrong and what to do, '' otherwise"),
    },
)

INTAKE_LEDGER = TableContract(
    "intake_ledger",
    "Which vendor return files (by sha256) were ingested on which day, so a resubmission counts once.",
    {
        "source_sha256": _c("string", "sha256 of an ingested return file"),
        "partition_date": _c("string", "day it was ingested, YYYY-MM-DD"),
    },
)

ALL_CONTRACTS += [PREDICTION_LOG, DRIFT_SIGNALS, RELABEL_CAMPAIGN, ANNOTATOR_SCORECARDS, PROVENANCE,
                  INTAKE_FILES, INTAKE_LEDGER]


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


def quarantine_rows(stage: str, partition_date: str, source_file, record_ref, reason,
                    detail, item_id=None, annotator_id=None, annotation_id=None) -> pd.DataFrame:
    """Build QUARANTINE rows; each argument may be a scalar or an array (all arrays of one length)."""
    args = (source_file, record_ref, reason, detail, item_id, annotator_id, annotation_id)
    lengths = {len(v) for v in args if isinstance(v, (list, tuple, np.ndarray, pd.Series, pd.Index))}
    if len(lengths) > 1:
        raise ValueError(f"quarantine_rows: array arguments differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 1
    def col(v):
        return list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series, pd.Index)) else [v] * n
    df = pd.DataFrame({
        "stage": col(stage), "partition_date": col(partition_date), "source_file": col(source_file),
        "record_ref": col(record_ref), "reason": col(reason), "detail": col(detail),
        "item_id": col(item_id), "annotator_id": col(annotator_id), "annotation_id": col(annotation_id),
    })
    return QUARANTINE.conform(df)


def item_id_for_bytes(content: bytes) -> str:
    """Items are named by the hash of their bytes: the same file is the same item anywhere."""
    return hashlib.sha256(content).hexdigest()[:16]


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
