"""One day's vendor returns, end to end: intake, the row-level suite, batch health.

What the Dagster step around it does is fetch the files and persist the results; everything
that decides what is accepted lives here, testable without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE
from annotation_pipeline.qa.batch_health import batch_health
from annotation_pipeline.qa.outcomes import CheckOutcome, QAThresholds
from annotation_pipeline.qa.row_suite import RowValidation, validate_annotations
from annotation_pipeline.vendor.intake import intake_vendor_returns


@dataclass
class ReturnsReport:
    accepted: pd.DataFrame          # ANNOTATIONS that passed intake and the row suite
    quarantine: pd.DataFrame        # QUARANTINE rows of intake and QA
    files: pd.DataFrame             # one row per file received, with its status
    validation: RowValidation
    health: list[CheckOutcome]
    received: int                   # records received (results, COCO annotations, unreadable files)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def accepted_sha256(self) -> set[str]:
        return set(self.files.loc[self.files["status"] == "accepted", "source_sha256"])


def process_vendor_returns(returns: dict[str, tuple[Path, list[Path]]], tasks: pd.DataFrame, gold: pd.DataFrame,
                           ontology: dict, *, vendor: str, already_ingested_sha256: set[str],
                           partition_date: str, thresholds: QAThresholds = QAThresholds(),
                           docs_dir: Path | None = None) -> ReturnsReport:
    """``returns`` maps batch_id to (inbox folder, files); ``tasks`` is VENDOR_TASKS of those batches."""
    annotations, quarantines, files = [], [], []
    seen = set(already_ingested_sha256)
    for batch_id, (inbox, batch_files) in returns.items():
        intake = intake_vendor_returns(batch_files, inbox, tasks[tasks["batch_id"] == batch_id], ontology,
                                       vendor=vendor, already_ingested_sha256=seen, partition_date=partition_date)
        seen |= set(intake.files["source_sha256"].dropna())
        annotations.append(intake.annotations); quarantines.append(intake.quarantine); files.append(intake.files)
    parsed = pd.concat(annotations, ignore_index=True) if annotations else ANNOTATIONS.empty()
    files_report = pd.concat(files, ignore_index=True) if files else pd.DataFrame(
        {"status": pd.Series(dtype=str), "n_received": pd.Series(dtype="int64"), "source_sha256": pd.Series(dtype=str)})
    validation = validate_annotations(parsed, tasks, ontology, thresholds=thresholds, partition_date=partition_date,
                                      docs_dir=docs_dir, run_name=f"returned_annotations-{partition_date}")
    quarantine = QUARANTINE.conform(pd.concat([*quarantines, validation.quarantined], ignore_index=True))
    received = int(files_report["n_received"].sum())
    health = batch_health(validation.accepted, quarantine, received, tasks, gold, ontology, thresholds=thresholds,
                          docs_dir=docs_dir, run_name=f"batch_health-{partition_date}")
    return ReturnsReport(validation.accepted, quarantine, files_report, validation, health, received)


class IntakeLedger:
    """Which return files (by sha256) were ingested on which day, so a resubmission counts once.

    A rerun of a day re-reads that day's own files: only other days' files count as seen.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> pd.DataFrame:
        if self.path.exists():
            return pd.read_parquet(self.path)
        return pd.DataFrame({"source_sha256": pd.Series(dtype=str), "partition_date": pd.Series(dtype=str)})

    def seen_before(self, partition_date: str) -> set[str]:
        ledger = self._read()
        return set(ledger.loc[ledger["partition_date"] != partition_date, "source_sha256"])

    def record(self, partition_date: str, sha256s: set[str]) -> None:
        ledger = self._read()
        updated = pd.concat([ledger[ledger["partition_date"] != partition_date],
                             pd.DataFrame({"source_sha256": sorted(sha256s), "partition_date": partition_date})],
                            ignore_index=True)
        write_parquet_atomic(updated, self.path)
