"""One day's vendor returns, end to end: intake, the row-level suite, batch health.

The one intake path: the ``returned_annotations`` asset and ``annotation-pipeline intake``
both call ``process_vendor_returns``, so a file is judged the same way by both. What the
callers add around it is state, not judgement: the asset reads the intake ledger (files
ingested on other days count as duplicates), records the day's accepted files in it, writes
Data Docs and persists the tables; the CLI only reads the ledger and writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import ANNOTATIONS, INTAKE_LEDGER, QUARANTINE
from annotation_pipeline.qa.batch_health import batch_health
from annotation_pipeline.qa.outcomes import CheckOutcome, QAThresholds
from annotation_pipeline.qa.row_suite import RowValidation, validate_annotations
from annotation_pipeline.vendor.intake import FILE_COLUMNS, batch_folder_entries, file_counts, intake_vendor_returns


@dataclass
class ReturnsReport:
    accepted: pd.DataFrame          # ANNOTATIONS that passed intake and the row suite
    quarantine: pd.DataFrame        # QUARANTINE rows of intake and QA
    files: pd.DataFrame             # one row per file received, with its status (intake.FILE_COLUMNS)
    validation: RowValidation
    health: list[CheckOutcome]
    received: int                   # records received (results, COCO annotations, unreadable files)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def accepted_sha256(self) -> set[str]:
        return set(self.files.loc[self.files["status"] == "accepted", "source_sha256"])

    def file_counts(self) -> dict[str, int]:
        """files_received = files_accepted + files_quarantined + files_duplicate.

        files_accepted is also what the intake ledger records for the day (``accepted_sha256``).
        """
        return file_counts(self.files)

    def counts(self) -> dict[str, int]:
        """Records and files, each reconciling: received = accepted + quarantined (+ duplicate files)."""
        return {"received": self.received, "accepted": len(self.accepted), "quarantined": self.quarantined,
                **self.file_counts()}

    @property
    def reconciles(self) -> bool:
        c = self.counts()
        return (c["received"] == c["accepted"] + c["quarantined"]
                and c["files_received"] == c["files_accepted"] + c["files_quarantined"] + c["files_duplicate"])


def returned_files(inbox: Path, batch_id: str, given: Iterable[Path] = ()) -> list[Path]:
    """The files of a batch to judge: those ``given`` and every entry of ``inbox/<batch_id>/``.

    The exchange may have filtered its listing (hidden names, links, FIFOs, sub-folders);
    intake still counts each entry, so nothing in the folder goes unaccounted for.
    """
    paths = {os.path.abspath(p): Path(p) for p in [*given, *batch_folder_entries(inbox, batch_id)]}
    return [paths[k] for k in sorted(paths, key=os.fsencode)]


def process_vendor_returns(returns: dict[str, tuple[Path, list[Path]]], tasks: pd.DataFrame, gold: pd.DataFrame,
                           ontology: dict, *, vendor: str, already_ingested_sha256: set[str],
                           partition_date: str, thresholds: QAThresholds = QAThresholds(),
                           docs_dir: Path | None = None, whole_batch_folders: bool = True) -> ReturnsReport:
    """``returns`` maps batch_id to (inbox folder, files); ``tasks`` is VENDOR_TASKS (of these batches or more).

    With ``whole_batch_folders`` every entry of ``inbox/<batch_id>/`` is judged besides the
    files given (the asset); without, only the files given (the CLI, on the files it is shown).
    """
    annotations, quarantines, files = [], [], []
    seen = set(already_ingested_sha256)
    for batch_id, (inbox, batch_files) in returns.items():
        batch_files = returned_files(inbox, batch_id, batch_files) if whole_batch_folders else list(batch_files)
        intake = intake_vendor_returns(batch_files, inbox, tasks, ontology, vendor=vendor,
                                       already_ingested_sha256=seen, partition_date=partition_date)
        seen |= set(intake.files.loc[intake.files["status"] == "accepted", "source_sha256"].dropna())
        annotations.append(intake.annotations); quarantines.append(intake.quarantine); files.append(intake.files)
    parsed = pd.concat(annotations, ignore_index=True) if annotations else ANNOTATIONS.empty()
    files_report = (pd.concat(files, ignore_index=True) if files
                    else pd.DataFrame({c: pd.Series(dtype="int64" if c.startswith("n_") else object)
                                       for c in FILE_COLUMNS}))
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
            return INTAKE_LEDGER.conform(pd.read_parquet(self.path))
        return INTAKE_LEDGER.empty()

    def seen_before(self, partition_date: str) -> set[str]:
        ledger = self._read()
        return set(ledger.loc[ledger["partition_date"] != partition_date, "source_sha256"])

    def record(self, partition_date: str, sha256s: set[str]) -> None:
        ledger = self._read()
        updated = pd.concat([ledger[ledger["partition_date"] != partition_date],
                             pd.DataFrame({"source_sha256": sorted(sha256s), "partition_date": partition_date})],
                            ignore_index=True)
        write_parquet_atomic(INTAKE_LEDGER.conform(updated), self.path)
