"""The lifecycle's tables, from landing to release, and the quarantine every stage writes to."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.contracts.base import _BOX, TableContract, _c

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
