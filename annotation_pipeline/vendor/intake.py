"""Vendor return intake, file by file: Label Studio JSON exports and COCO JSON, one contract.

Every entry given ends ``accepted`` (its rows parsed; each row accepted or quarantined),
``quarantined`` (the whole file could not be read, or it belongs to another batch) or
``duplicate_file`` (same bytes as a file ingested before; not counted twice). Row counts
reconcile per file and in total: ``received = accepted + quarantined``; file counts too:
``files = accepted + quarantined + duplicate``.

What an entry of ``inbox/<batch_id>/`` may be, and what becomes of it:
- a regular file: read (never through a link: opened with O_NOFOLLOW, checked with fstat);
- a symlink, wherever it points: quarantined, never followed (``symlink`` when it resolves
  inside the inbox, ``path_outside_inbox`` when outside, ``dangling_symlink`` when nowhere).
  A link inside the inbox is refused too: the file it names is in the inbox already, or
  should be uploaded itself;
- a sub-folder: quarantined (``subfolder``), not read recursively: exports are flat files,
  and the S3 exchange flattens keys into one folder per batch;
- a FIFO, device or socket: quarantined (``special_file``), never opened;
- a name that is not UTF-8 is read like any other; it is shown with ``\\xNN`` escapes.
What one received record is (per format) is said in ``label_studio_format`` and
``coco_format``; a file that cannot be read at all counts as one record (the file itself).

Geometry leaves here in pixel coordinates of the image as we sent it (Label Studio
percentages are scaled by ``original_width``/``original_height``, else the handoff image size;
a result-level ``image_rotation`` in quarter turns is turned back). Whether a geometry is
*sensible* (area, bounds, aspect, polygon validity) is the QA suite's job (``qa.row_suite``); intake only rejects what cannot be represented.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from annotation_pipeline.contracts import ANNOTATIONS, INTAKE_FILES, QUARANTINE, VENDOR_TASKS, quarantine_rows
from annotation_pipeline.vendor.answer_rows import finalize_rows
from annotation_pipeline.vendor.coco_format import parse_coco
from annotation_pipeline.vendor.export_format import MAX_FILE_BYTES, FileRejected, decode_json, gc_paused, preview
from annotation_pipeline.vendor.label_studio_format import parse_label_studio

STAGE = "intake"

FILE_COLUMNS = INTAKE_FILES.column_names  # the intake file report (contract in contracts/lifecycle.py)
FILE_STATUSES = ("accepted", "quarantined", "duplicate_file")


@dataclass
class IntakeResult:
    annotations: pd.DataFrame  # contracts.ANNOTATIONS
    quarantine: pd.DataFrame   # contracts.QUARANTINE, stage "intake"
    files: pd.DataFrame        # one row per file given, columns FILE_COLUMNS

    @property
    def n_received(self) -> int:
        return int(self.files["n_received"].sum())

    @property
    def n_accepted(self) -> int:
        return len(self.annotations)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def n_duplicate_files(self) -> int:
        return int((self.files["status"] == "duplicate_file").sum())

    @property
    def reconciles(self) -> bool:
        per_file = (self.files["n_received"] == self.files["n_accepted"] + self.files["n_quarantined"]).all()
        files_ok = bool(self.files["status"].isin(FILE_STATUSES).all())
        return bool(per_file) and files_ok and self.n_received == self.n_accepted + self.n_quarantined

    def counts(self) -> dict[str, int]:
        return {"files": len(self.files), "duplicate_files": self.n_duplicate_files,
                "received": self.n_received, "accepted": self.n_accepted,
                "quarantined": self.n_quarantined}


def file_counts(files: pd.DataFrame) -> dict[str, int]:
    """``files_received = files_accepted + files_quarantined + files_duplicate`` of a files report."""
    status = files["status"].value_counts()
    return {"files_received": len(files), "files_accepted": int(status.get("accepted", 0)),
            "files_quarantined": int(status.get("quarantined", 0)),
            "files_duplicate": int(status.get("duplicate_file", 0))}


def display_name(path: str | os.PathLike) -> str:
    """A path as text that can be printed and stored: undecodable bytes shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def batch_folder_entries(inbox_root: Path, batch_id: str) -> list[Path]:
    """Every entry of ``inbox_root/<batch_id>/``, links and odd entries included, never followed.

    Sorted by the bytes of their names (deterministic, whatever the encoding). Empty when the
    folder does not exist; a batch "folder" that is a link is returned as itself, so intake
    quarantines it instead of reading through it.
    """
    folder = Path(inbox_root) / batch_id
    if folder.is_symlink():
        return [folder]
    if not folder.is_dir():
        return []
    try:
        with os.scandir(folder) as scan:
            names = sorted((entry.name for entry in scan), key=os.fsencode)
    except OSError:  # unreadable folder: the files the exchange listed are still judged one by one
        return []
    return [folder / name for name in names]


def intake_vendor_returns(files: Iterable[Path], inbox_root: Path, tasks: pd.DataFrame,
                          ontology: Any, *, vendor: str,
                          already_ingested_sha256: Iterable[str] = frozenset(),
                          partition_date: str = "") -> IntakeResult:
    """Parse vendor return files found under ``inbox_root/<batch_id>/`` into ANNOTATIONS rows.

    ``tasks`` is our side of the handoff (contracts.VENDOR_TASKS), of this batch or of many:
    a row whose task id is not among the batch's tasks for ``vendor`` is quarantined as
    ``unknown_task``, and a file whose images all belong elsewhere as ``wrong_batch``. Files
    are read in the order given (sorted by the caller for determinism); a file whose sha256 is
    in ``already_ingested_sha256`` or was seen earlier in this call is a ``duplicate_file``.
    """
    VENDOR_TASKS.validate(tasks)
    seen = set(already_ingested_sha256)
    annotation_parts, quarantine_parts, file_rows = [], [], []
    inbox_abs = Path(os.path.abspath(inbox_root))
    for given in files:
        row, accepted, quarantined = _intake_one(Path(given), inbox_abs, seen, tasks, vendor=vendor,
                                                 partition_date=partition_date)
        annotation_parts.append(accepted)
        quarantine_parts.append(quarantined)
        file_rows.append(row)
    annotations = pd.concat(annotation_parts, ignore_index=True) if annotation_parts else ANNOTATIONS.empty()
    quarantine = pd.concat(quarantine_parts, ignore_index=True) if quarantine_parts else QUARANTINE.empty()
    files_df = INTAKE_FILES.conform(pd.DataFrame(file_rows, columns=INTAKE_FILES.column_names))
    return IntakeResult(ANNOTATIONS.conform(annotations), QUARANTINE.conform(quarantine), files_df)


def _intake_one(given: Path, inbox_abs: Path, seen: set[str], tasks: pd.DataFrame, *, vendor: str,
                partition_date: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One entry -> (files-report row, accepted rows, quarantined rows)."""
    source_file = _shown_name(given, inbox_abs)
    row = {"source_file": source_file, "source_sha256": None, "batch_id": None, "format": None,
           "status": "accepted", "n_received": 0, "n_accepted": 0, "n_quarantined": 0,
           "reason": "", "detail": ""}
    try:
        rel, batch_id = _locate(given, inbox_abs)
        row["batch_id"] = batch_id
        raw = _read_entry(Path(os.path.abspath(given)), inbox_abs)
        digest = hashlib.sha256(raw).hexdigest()
        row["source_sha256"] = digest
        if digest in seen:
            row.update(status="duplicate_file", reason="duplicate_file",
                       detail=f"identical content (sha256 {digest[:12]}…) was already ingested; not counted again")
            return row, ANNOTATIONS.empty(), QUARANTINE.empty()
        with gc_paused():  # the document's containers, and Arrow's typing of them
            row["format"], parsed = _parse_document(decode_json(raw))
        outcome = finalize_rows(parsed, source_file=rel, sha256=digest, batch_id=batch_id, vendor=vendor,
                                tasks=tasks, partition_date=partition_date, stage=STAGE)
    except FileRejected as rejected:
        return _rejected(row, rejected.reason, rejected.detail, partition_date)
    except Exception as exc:  # noqa: BLE001 - whatever one file does, the day's other files go on
        return _rejected(row, "unreadable_export",
                         f"intake could not read this file ({type(exc).__name__}: {preview(str(exc))}); "
                         "send it to the pipeline maintainers with this message", partition_date)
    row.update(n_received=len(parsed), n_accepted=len(outcome.accepted), n_quarantined=len(outcome.quarantined))
    if outcome.file_reason:  # not marked seen: its copy in the right batch folder must still be read
        row.update(status="quarantined", reason=outcome.file_reason, detail=outcome.file_detail)
        return row, outcome.accepted, outcome.quarantined
    seen.add(digest)
    if len(parsed) == 0:
        row.update(reason="empty_file", detail="the file holds no tasks or annotations")
    return row, outcome.accepted, outcome.quarantined


def _rejected(row: dict, reason: str, detail: str, partition_date: str
              ) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    row.update(status="quarantined", n_received=1, n_accepted=0, n_quarantined=1, reason=reason, detail=detail)
    quarantined = quarantine_rows(STAGE, partition_date, row["source_file"], "", reason, detail)
    return row, ANNOTATIONS.empty(), quarantined


# ---------------------------------------------------------------- where the file is, what it is

def _shown_name(given: Path, inbox_abs: Path) -> str:
    """The name recorded for a file: relative to the inbox when inside it, else as given."""
    normalized = Path(os.path.abspath(given))
    try:
        return display_name(normalized.relative_to(inbox_abs).as_posix())
    except ValueError:
        return display_name(given.as_posix())


def _locate(given: Path, inbox_abs: Path) -> tuple[str, str]:
    """Refuse names that escape the inbox (``../``, elsewhere on disk, a batch folder linked out).

    Returns the (displayable) name relative to the inbox and the batch id (the folder under it).
    """
    shown = display_name(given.as_posix())
    if ".." in given.parts:
        raise FileRejected("path_outside_inbox",
                           f"file name {shown!r} contains '..'; vendor files must sit in "
                           f"{inbox_abs}/<batch_id>/ and names may not climb out of it")
    normalized = Path(os.path.abspath(given))
    if not normalized.is_relative_to(inbox_abs):
        raise FileRejected("path_outside_inbox",
                           f"{shown!r} is outside the inbox {inbox_abs}; move it to {inbox_abs}/<batch_id>/")
    rel = normalized.relative_to(inbox_abs)
    if len(rel.parts) < 2:
        kind = "a link" if normalized.is_symlink() else "not inside a batch folder"
        raise FileRejected("no_batch_folder",
                           f"{display_name(rel.as_posix())!r} is {kind}; expected a file in "
                           f"{inbox_abs}/<batch_id>/")
    if len(rel.parts) > 2:
        raise FileRejected("subfolder", f"{display_name(rel.as_posix())!r} sits in a sub-folder of batch "
                                        f"{display_name(rel.parts[0])!r}; sub-folders are not read: put "
                                        "each export directly in the batch folder")
    batch_real = os.path.realpath(inbox_abs / rel.parts[0])
    if batch_real != os.path.join(os.path.realpath(inbox_abs), rel.parts[0]):
        raise FileRejected("path_outside_inbox",
                           f"batch folder {display_name(rel.parts[0])!r} is a link to {display_name(batch_real)!r}; "
                           "links are never followed out of the inbox")
    return display_name(rel.as_posix()), display_name(rel.parts[0])


_SPECIAL = [(stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def _classify(mode: int) -> str:
    return next((name for test, name in _SPECIAL if test(mode)), "not a regular file")


def _read_entry(path: Path, inbox_abs: Path) -> bytes:
    """The bytes of a regular file, or FileRejected naming what the entry is instead."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise FileRejected("file_not_found", f"{display_name(path)} does not exist") from None
    except OSError as exc:
        raise FileRejected("unreadable_file", f"{display_name(path)}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise _link_rejection(path, inbox_abs)
    if stat.S_ISDIR(info.st_mode):
        raise FileRejected("subfolder", f"{display_name(path.name)!r} is a folder; sub-folders of a batch "
                                        "are not read: put each export directly in the batch folder")
    if not stat.S_ISREG(info.st_mode):
        raise FileRejected("special_file", f"{display_name(path.name)!r} is {_classify(info.st_mode)}, "
                                           "not a file; it was not opened")
    if info.st_size > MAX_FILE_BYTES:
        raise FileRejected("file_too_large", f"the file is {info.st_size} bytes, over the "
                                             f"{MAX_FILE_BYTES} byte limit; split the export")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise FileRejected("unreadable_file", f"{display_name(path)} cannot be read (permission denied)") from None
    except OSError as exc:  # replaced by a link since lstat (ELOOP), name too long, ...
        raise FileRejected("unreadable_file", f"{display_name(path)}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since lstat
            raise FileRejected("special_file", f"{display_name(path.name)!r} is not a regular file")
        raw = handle.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:  # grew since lstat
        raise FileRejected("file_too_large", f"the file is over the {MAX_FILE_BYTES} byte limit; split the export")
    return raw


def _link_rejection(path: Path, inbox_abs: Path) -> FileRejected:
    target = os.path.realpath(path)
    shown = display_name(path.name)
    if not os.path.lexists(target) or not os.path.exists(path):
        return FileRejected("dangling_symlink", f"{shown!r} is a link to {display_name(os.readlink(path))!r}, "
                                                "which does not exist; upload the file itself")
    if not Path(target).is_relative_to(os.path.realpath(inbox_abs)):
        return FileRejected("path_outside_inbox", f"{shown!r} is a link that points outside the inbox "
                                                  f"{inbox_abs}; links are never followed")
    return FileRejected("symlink", f"{shown!r} is a link to {display_name(target)!r} inside the inbox; links "
                                   "are never followed, even inside the inbox: upload the file itself")


def _parse_document(document: Any) -> tuple[str, pd.DataFrame]:
    if isinstance(document, list):
        return "label_studio", parse_label_studio(document)
    if isinstance(document, dict) and {"images", "annotations"} <= document.keys():
        return "coco", parse_coco(document)
    shape = type(document).__name__
    keys = (" with keys " + ", ".join(preview(k, 30) for k in sorted(map(str, document))[:6])
            if isinstance(document, dict) else "")
    raise FileRejected("unknown_format",
                       f"expected a Label Studio export (a JSON list of tasks) or COCO JSON "
                       f"(an object with images, annotations, categories); got a {shape}{keys}")
