"""One contract per table: column names, dtypes, nullability and meaning, written once.

Every stage conforms its output with ``CONTRACT.conform(df)`` before it is persisted and
checks its input with ``CONTRACT.validate(df)``; tests use the same objects. Geometry is in
pixel coordinates: boxes as ``x_min, y_min, x_max, y_max`` (vectorizable), polygons as WKB.
"""

from annotation_pipeline.contracts.base import (
    Column,
    ContractError,
    TableContract,
    item_id_for_bytes,
    missing_columns,
    require_columns,
)
from annotation_pipeline.contracts.lifecycle import (
    AGREEMENT_METRICS,
    ALL_CONTRACTS,
    ANNOTATIONS,
    ANNOTATOR_SCORECARDS,
    ANONYMIZED_ITEMS,
    CONSENSUS_LABELS,
    DRIFT_SIGNALS,
    GOLD_LABELS,
    INTAKE_FILES,
    INTAKE_LEDGER,
    LABELING_QUEUE,
    LANDING_ORIGINALS,
    PREDICTION_LOG,
    PRELABELS,
    PROVENANCE,
    QUARANTINE,
    RAW_ITEMS,
    REDACTION_LOG,
    RELABEL_CAMPAIGN,
    REVIEW_QUEUE,
    VENDOR_TASKS,
    quarantine_rows,
)
from annotation_pipeline.contracts.program import ALL_CONTRACTS as _PROGRAM_CONTRACTS
from annotation_pipeline.contracts.program import (
    AUTO_ACCEPT_EVIDENCE,
    AUTO_ACCEPTED_LABELS,
    RELEASED_LABELS,
    REVIEW_DECISIONS,
    REVIEW_TASKS,
    REVIEWER_ACCURACY,
    VENDOR_SCORECARDS,
)

ALL_CONTRACTS = ALL_CONTRACTS + _PROGRAM_CONTRACTS

__all__ = ["AGREEMENT_METRICS", "ALL_CONTRACTS", "ANNOTATIONS", "ANNOTATOR_SCORECARDS", "ANONYMIZED_ITEMS", "AUTO_ACCEPTED_LABELS", "AUTO_ACCEPT_EVIDENCE", "CONSENSUS_LABELS", "Column", "ContractError", "DRIFT_SIGNALS", "GOLD_LABELS", "INTAKE_FILES", "INTAKE_LEDGER", "LABELING_QUEUE", "LANDING_ORIGINALS", "PREDICTION_LOG", "PRELABELS", "PROVENANCE", "QUARANTINE", "RAW_ITEMS", "REDACTION_LOG", "RELABEL_CAMPAIGN", "RELEASED_LABELS", "REVIEWER_ACCURACY", "REVIEW_DECISIONS", "REVIEW_QUEUE", "REVIEW_TASKS", "TableContract", "VENDOR_SCORECARDS", "VENDOR_TASKS", "item_id_for_bytes", "missing_columns", "quarantine_rows", "require_columns"]
