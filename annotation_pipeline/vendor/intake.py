"""Vendor return intake: Label Studio JSON exports and COCO JSON, mapped to one contract.

Every file ends ``accepted`` (its rows parsed; each row accepted or quarantined),
``quarantined`` (the whole file could not be read: unsafe path, not UTF-8, truncated JSON,
unknown format) or ``duplicate_file`` (same bytes as a file ingested before; not counted
twice). Row counts reconcile per file and in total: ``received = accepted + quarantined``.

What counts as one received record:
- Label Studio: one ``result`` entry of an annotation; an annotation with no results (or a
  malformed annotation / task entry) counts as one record of its own, so it cannot vanish.
- COCO: one entry of ``annotations``.
- A file that cannot be read at all counts as one record (the file itself).

Geometry leaves here in pixel coordinates (Label Studio percentages are scaled by the
``original_width``/``original_height`` of the result, else the handoff image size). Whether a
geometry is *sensible* (area, bounds, aspect, polygon validity) is the QA suite's job
(``annotation_pipeline.qa.row_suite``); intake only rejects what cannot be represented in the contract.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE, VENDOR_TASKS, quarantine_rows

STAGE = "intake"

KIND_BY_LABEL_STUDIO_TYPE = {"choices": "choice", "rectanglelabels": "box", "polygonlabels": "polygon"}

FILE_COLUMNS = ["source_file", "source_sha256", "batch_id", "format", "status", "n_received",
                "n_accepted", "n_quarantined", "reason", "detail"]


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
        return bool(per_file) and self.n_received == self.n_accepted + self.n_quarantined

    def counts(self) -> dict[str, int]:
        return {"files": len(self.files), "duplicate_files": self.n_duplicate_files,
                "received": self.n_received, "accepted": self.n_accepted,
                "quarantined": self.n_quarantined}


class _FileRejected(Exception):
    """The whole file is unusable; carries a reason code and a sentence for the vendor manager."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# Columns of the intermediate "parsed rows" frame both format parsers produce.
_PARSED = ["record_ref", "task_id", "ann_ref", "result_ref", "annotator_id", "lead_time_s",
           "kind", "label", "x", "y", "w", "h", "points", "percent", "ref_width", "ref_height",
           "image_name", "problem", "problem_detail"]


def intake_vendor_returns(files: Iterable[Path], inbox_root: Path, tasks: pd.DataFrame,
                          ontology: Any, *, vendor: str,
                          already_ingested_sha256: Iterable[str] = frozenset(),
                          partition_date: str = "") -> IntakeResult:
    """Parse vendor return files found under ``inbox_root/<batch_id>/`` into ANNOTATIONS rows.

    ``tasks`` is our side of the handoff (contracts.VENDOR_TASKS); a row whose task id is not
    among the batch's tasks for ``vendor`` is quarantined as ``unknown_task``. Files are read in
    the order given (sorted by the caller for determinism); a file whose sha256 is in
    ``already_ingested_sha256`` or was seen earlier in this call is a ``duplicate_file``.
    """
    VENDOR_TASKS.validate(tasks)
    seen = set(already_ingested_sha256)
    annotation_parts, quarantine_parts, file_rows = [], [], []
    inbox_abs = Path(os.path.abspath(inbox_root))
    for given in files:
        source_file = _display_name(Path(given), inbox_abs)
        row = {"source_file": source_file, "source_sha256": None, "batch_id": None, "format": None,
               "status": "accepted", "n_received": 0, "n_accepted": 0, "n_quarantined": 0,
               "reason": "", "detail": ""}
        try:
            rel, batch_id = _safe_relative_path(Path(given), inbox_abs)
            row["batch_id"] = batch_id
            raw = _read_bytes(Path(given))
            digest = hashlib.sha256(raw).hexdigest()
            row["source_sha256"] = digest
            if digest in seen:
                row.update(status="duplicate_file", reason="duplicate_file",
                           detail=f"identical content (sha256 {digest[:12]}…) was already ingested; "
                                  "not counted again")
                file_rows.append(row)
                continue
            seen.add(digest)
            document = _decode_json(raw)
            fmt, parsed = _parse_document(document)
            row["format"] = fmt
        except _FileRejected as rejected:
            row.update(status="quarantined", n_received=1, n_quarantined=1,
                       reason=rejected.reason, detail=rejected.detail)
            quarantine_parts.append(quarantine_rows(STAGE, partition_date, source_file, "",
                                                    rejected.reason, rejected.detail))
            file_rows.append(row)
            continue
        accepted, quarantined = _finalize_rows(parsed, source_file=rel, sha256=digest,
                                               batch_id=batch_id, vendor=vendor, tasks=tasks,
                                               partition_date=partition_date)
        row.update(n_received=len(parsed), n_accepted=len(accepted), n_quarantined=len(quarantined))
        if len(parsed) == 0:
            row.update(reason="empty_file", detail="the file holds no tasks or annotations")
        annotation_parts.append(accepted)
        quarantine_parts.append(quarantined)
        file_rows.append(row)
    annotations = (pd.concat(annotation_parts, ignore_index=True) if annotation_parts
                   else ANNOTATIONS.empty())
    quarantine = (pd.concat(quarantine_parts, ignore_index=True) if quarantine_parts
                  else QUARANTINE.empty())
    files_df = pd.DataFrame(file_rows, columns=FILE_COLUMNS)
    files_df = files_df.astype({"n_received": "int64", "n_accepted": "int64", "n_quarantined": "int64"})
    return IntakeResult(ANNOTATIONS.conform(annotations), QUARANTINE.conform(quarantine), files_df)


# ---------------------------------------------------------------- file-level checks

def _display_name(given: Path, inbox_abs: Path) -> str:
    """The name recorded for a file: relative to the inbox when inside it, else as given."""
    normalized = Path(os.path.abspath(given))
    try:
        return normalized.relative_to(inbox_abs).as_posix()
    except ValueError:
        return given.as_posix()


def _safe_relative_path(given: Path, inbox_abs: Path) -> tuple[str, str]:
    """Refuse names that escape the inbox (``../``, elsewhere on disk, symlinks out).

    Returns the name relative to the inbox and the batch id (the first folder under it).
    """
    if ".." in given.parts:
        raise _FileRejected("path_outside_inbox",
                            f"file name {given.as_posix()!r} contains '..'; vendor files must sit "
                            f"in {inbox_abs}/<batch_id>/ and names may not climb out of it")
    normalized = Path(os.path.abspath(given))
    if not normalized.is_relative_to(inbox_abs):
        raise _FileRejected("path_outside_inbox",
                            f"{given.as_posix()!r} is outside the inbox {inbox_abs}; move it to "
                            f"{inbox_abs}/<batch_id>/")
    if normalized.is_symlink() and not normalized.resolve().is_relative_to(inbox_abs.resolve()):
        raise _FileRejected("path_outside_inbox",
                            f"{given.as_posix()!r} is a link that points outside the inbox {inbox_abs}")
    rel = normalized.relative_to(inbox_abs)
    if len(rel.parts) < 2:
        raise _FileRejected("no_batch_folder",
                            f"{rel.as_posix()!r} is not inside a batch folder; expected "
                            f"{inbox_abs}/<batch_id>/{rel.name}")
    return rel.as_posix(), rel.parts[0]


def _read_bytes(given: Path) -> bytes:
    path = Path(os.path.abspath(given))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _FileRejected("file_not_found", f"{path} does not exist") from None
    except IsADirectoryError:
        raise _FileRejected("not_a_file", f"{path} is a directory, expected a JSON file") from None
    except PermissionError:
        raise _FileRejected("unreadable_file", f"{path} cannot be read (permission denied)") from None


def _decode_json(raw: bytes) -> Any:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _FileRejected("not_utf8", "the file is UTF-16 (byte-order mark found); "
                                        "export it again as UTF-8 JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _FileRejected("not_utf8",
                            f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8; "
                            "export the file again as UTF-8 JSON") from None
    if not text.strip():
        raise _FileRejected("empty_file", "the file is empty; expected a JSON export")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise _FileRejected("truncated_json",
                                f"the JSON ends early at line {exc.lineno} column {exc.colno} "
                                f"({exc.msg}); the upload was probably cut off, ask for it again"
                                ) from None
        raise _FileRejected("invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                            f"column {exc.colno}") from None
    except RecursionError:
        raise _FileRejected("invalid_json", "the JSON nests too deeply to be an export") from None


def _parse_document(document: Any) -> tuple[str, pd.DataFrame]:
    if isinstance(document, list):
        return "label_studio", _parse_label_studio(document)
    if isinstance(document, dict) and {"images", "annotations"} <= document.keys():
        return "coco", _parse_coco(document)
    shape = type(document).__name__
    keys = f" with keys {sorted(document)[:6]}" if isinstance(document, dict) else ""
    raise _FileRejected("unknown_format",
                        f"expected a Label Studio export (a JSON list of tasks) or COCO JSON "
                        f"(an object with images, annotations, categories); got a {shape}{keys}")


# ---------------------------------------------------------------- format parsers

def _record(record_ref: str, task_id: Any = None, ann_ref: Any = "", result_ref: Any = "",
            annotator_id: Any = None, lead_time_s: Any = None, kind: Any = None, label: Any = None,
            x: Any = None, y: Any = None, w: Any = None, h: Any = None, points: Any = None,
            percent: bool = False, ref_width: Any = None, ref_height: Any = None,
            image_name: Any = None, problem: str = "", problem_detail: str = "") -> tuple:
    return (record_ref, task_id, ann_ref, result_ref, annotator_id, lead_time_s, kind, label,
            x, y, w, h, points, percent, ref_width, ref_height, image_name, problem, problem_detail)


def _annotator_from_completed_by(completed_by: Any) -> str | None:
    """Our convention: e-mail local part when given, else ``user-<id>``."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and "@" in email and email.split("@", 1)[0]:
            return email.split("@", 1)[0]
        completed_by = completed_by.get("id")
    if isinstance(completed_by, (int, str)) and not isinstance(completed_by, bool) and str(completed_by):
        return f"user-{completed_by}"
    return None


def _task_id_text(value: Any) -> str | None:
    """Task ids are integers (sent as int; a string of an int is tolerated)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value))
    return None


def _single_label(value: dict, key: str) -> tuple[str | None, str]:
    labels = value.get(key)
    if isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str) and labels[0]:
        return labels[0], ""
    if isinstance(labels, list) and len(labels) > 1:
        return None, f"{len(labels)} labels given in value.{key}, expected exactly one"
    return None, f"value.{key} must be a list with one label, got {labels!r:.60}"


def _parse_label_studio(tasks: list) -> pd.DataFrame:
    # JSON nesting has to be walked in Python once; everything after this is vectorized.
    records: list[tuple] = []
    for ti, task in enumerate(tasks):
        where = f"[{ti}]"
        if not isinstance(task, dict):
            records.append(_record(where, problem="malformed_task",
                                   problem_detail=f"task {where} is a {type(task).__name__}, expected an object"))
            continue
        task_id = _task_id_text(task.get("id"))
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        image_name = data.get("image") if isinstance(data.get("image"), str) else None
        annotations = task.get("annotations")
        if task_id is None:
            records.append(_record(where, problem="invalid_task_id",
                                   problem_detail=f"task {where} has id {task.get('id')!r}, expected an integer"))
            continue
        if annotations is None:
            annotations = []
        if not isinstance(annotations, list):
            records.append(_record(f"task={task_id} {where}", task_id, problem="malformed_task",
                                   problem_detail="'annotations' must be a list"))
            continue
        for ai, ann in enumerate(annotations):
            awhere = f"{where}.annotations[{ai}]"
            if not isinstance(ann, dict):
                records.append(_record(f"task={task_id} {awhere}", task_id, problem="malformed_annotation",
                                       problem_detail=f"annotation {awhere} is not an object"))
                continue
            ann_ref = ann.get("id", ai)
            annotator = _annotator_from_completed_by(ann.get("completed_by"))
            lead_time = ann.get("lead_time")
            results = ann.get("result")
            base = dict(task_id=task_id, ann_ref=ann_ref, annotator_id=annotator,
                        lead_time_s=lead_time, image_name=image_name)
            if not isinstance(results, list) or not results:
                cancelled = bool(ann.get("was_cancelled"))
                records.append(_record(
                    f"task={task_id} annotation={ann_ref} {awhere}", **base,
                    problem="cancelled_annotation" if cancelled else "empty_annotation",
                    problem_detail=("the annotator skipped/cancelled the task" if cancelled else
                                    "annotation has no results (partial submission)")))
                continue
            cancelled = bool(ann.get("was_cancelled"))
            for ri, res in enumerate(results):
                rwhere = f"{awhere}.result[{ri}]"
                if not isinstance(res, dict):
                    records.append(_record(f"task={task_id} annotation={ann_ref} {rwhere}", **base,
                                           result_ref=ri, problem="malformed_result",
                                           problem_detail="result entry is not an object"))
                    continue
                ref = f"task={task_id} annotation={ann_ref} result={res.get('id', ri)} {rwhere}"
                rtype = res.get("type")
                kind = KIND_BY_LABEL_STUDIO_TYPE.get(rtype)
                value = res.get("value") if isinstance(res.get("value"), dict) else None
                common = dict(base, result_ref=res.get("id", ri), kind=kind, percent=True,
                              ref_width=res.get("original_width"), ref_height=res.get("original_height"))
                if cancelled:
                    records.append(_record(ref, **common, problem="cancelled_annotation",
                                           problem_detail="result of an annotation marked was_cancelled"))
                    continue
                if kind is None:
                    records.append(_record(ref, **common, problem="unsupported_result_type",
                                           problem_detail=f"result type {rtype!r}; expected one of "
                                                          f"{sorted(KIND_BY_LABEL_STUDIO_TYPE)}"))
                    continue
                if value is None:
                    records.append(_record(ref, **common, problem="malformed_result",
                                           problem_detail="result has no 'value' object"))
                    continue
                label, label_problem = _single_label(value, rtype)
                if label_problem:
                    records.append(_record(ref, **common, label=label, problem="malformed_label",
                                           problem_detail=label_problem))
                    continue
                if kind == "choice":
                    records.append(_record(ref, **common, label=label))
                elif kind == "box":
                    rotation = value.get("rotation") or 0
                    problem, detail = "", ""
                    if rotation not in (0, 0.0):
                        problem, detail = "rotated_box", (f"box rotated by {rotation!r} degrees; "
                                                          "only axis-aligned boxes are in the ontology")
                    records.append(_record(ref, **common, label=label, x=value.get("x"),
                                           y=value.get("y"), w=value.get("width"),
                                           h=value.get("height"), problem=problem,
                                           problem_detail=detail))
                else:
                    points, problem, detail = _points_array(value.get("points"))
                    records.append(_record(ref, **common, label=label, points=points,
                                           problem=problem, problem_detail=detail))
    return pd.DataFrame.from_records(records, columns=_PARSED)


def _points_array(points: Any) -> tuple[np.ndarray | None, str, str]:
    try:
        array = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        return None, "malformed_points", f"polygon points must be [[x, y], ...] numbers, got {points!r:.60}"
    if array.ndim != 2 or array.shape[1] != 2:
        return None, "malformed_points", f"polygon points must be [[x, y], ...], got shape {array.shape}"
    if len(array) < 3:
        return None, "too_few_points", f"polygon has {len(array)} point(s), at least 3 are needed"
    return array, "", ""


# COCO has no annotator field: without our annotator_id attribute, the file is one annotator.
_WHOLE_FILE = "<whole file>"


def _parse_coco(document: dict) -> pd.DataFrame:
    images, annotations = document.get("images"), document.get("annotations")
    categories = document.get("categories") or []
    if not isinstance(images, list) or not isinstance(annotations, list) or not isinstance(categories, list):
        raise _FileRejected("unknown_format", "COCO 'images', 'annotations' and 'categories' must be lists")
    image_by_id = {im.get("id"): im for im in images if isinstance(im, dict)}
    category_by_id = {c.get("id"): c.get("name") for c in categories if isinstance(c, dict)}
    records: list[tuple] = []
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            records.append(_record(where, problem="malformed_annotation",
                                   problem_detail=f"{where} is not an object"))
            continue
        ref = f"annotation={ann.get('id', i)} {where}"
        image = image_by_id.get(ann.get("image_id"))
        label = category_by_id.get(ann.get("category_id"))
        annotator = ann.get("annotator_id")
        # one COCO entry is one object; an annotator's answer to a task is all their entries
        common = dict(task_id=_task_id_text(ann.get("task_id")), ann_ref="coco",
                      result_ref=ann.get("id", i), annotator_id=_WHOLE_FILE if annotator is None else str(annotator),
                      lead_time_s=ann.get("lead_time"), label=label,
                      image_name=image.get("file_name") if image else None,
                      ref_width=image.get("width") if image else None,
                      ref_height=image.get("height") if image else None)
        if image is None:
            records.append(_record(ref, **common, problem="unknown_image",
                                   problem_detail=f"image_id {ann.get('image_id')!r} is not in 'images'"))
            continue
        if label is None:
            records.append(_record(ref, **common, problem="unknown_category",
                                   problem_detail=f"category_id {ann.get('category_id')!r} is not in 'categories'"))
            continue
        segmentation, bbox = ann.get("segmentation"), ann.get("bbox")
        if isinstance(segmentation, list) and segmentation:
            if len(segmentation) > 1:
                records.append(_record(ref, **common, kind="polygon", problem="multi_part_polygon",
                                       problem_detail=f"segmentation has {len(segmentation)} parts; "
                                                      "the ontology expects one polygon per object"))
                continue
            flat = segmentation[0]
            pts = (np.asarray(flat, dtype=object).reshape(-1, 2).tolist()
                   if isinstance(flat, list) and len(flat) % 2 == 0 else flat)
            points, problem, detail = _points_array(pts)
            records.append(_record(ref, **common, kind="polygon", points=points, problem=problem,
                                   problem_detail=detail))
        elif isinstance(bbox, list) and len(bbox) == 4:
            records.append(_record(ref, **common, kind="box", x=bbox[0], y=bbox[1], w=bbox[2], h=bbox[3]))
        elif bbox in (None, []) and not segmentation:
            # an image-level category without geometry is the scene answer
            records.append(_record(ref, **common, kind="choice"))
        else:
            records.append(_record(ref, **common, problem="malformed_bbox",
                                   problem_detail=f"bbox must be [x, y, width, height], got {bbox!r:.60}"))
    return pd.DataFrame.from_records(records, columns=_PARSED)


# ---------------------------------------------------------------- rows → contract

def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _finalize_rows(parsed: pd.DataFrame, *, source_file: str, sha256: str, batch_id: str,
                   vendor: str, tasks: pd.DataFrame, partition_date: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the handoff tasks, convert to pixels, and split accepted from quarantined rows."""
    if parsed.empty:
        return ANNOTATIONS.empty(), QUARANTINE.empty()
    df = parsed.reset_index(drop=True)
    # COCO without our task_id attribute: map images to tasks by file name.
    batch_tasks = tasks[(tasks["batch_id"] == batch_id) & (tasks["vendor"] == vendor)]
    by_file = pd.Series(batch_tasks["task_id"].to_numpy(),
                        index=batch_tasks["image_file"].map(lambda f: PurePosixPath(f).name).to_numpy())
    by_file = by_file[~by_file.index.duplicated()]
    image_base = df["image_name"].map(_base_name)
    df["task_id"] = df["task_id"].where(df["task_id"].notna(), image_base.map(by_file)).astype("string")

    joined = df.merge(batch_tasks, on="task_id", how="left", suffixes=("", "_task"),
                      validate="many_to_one", indicator=True)
    known_task = (joined["_merge"] == "both").to_numpy()
    # COCO files without annotator attributes: the file is one annotator's work.
    joined["annotator_id"] = joined["annotator_id"].replace(_WHOLE_FILE, f"file-{sha256[:8]}")
    joined["annotation_id"] = [
        hashlib.sha256(f"{sha256}|{t}|{a}|{r}|{ref}".encode()).hexdigest()[:16]
        for t, a, r, ref in zip(joined["task_id"], joined["ann_ref"], joined["result_ref"],
                                joined["record_ref"])]

    width = np.where(pd.notna(joined["ref_width"]), _numeric(joined["ref_width"]),
                     joined["image_width"].to_numpy(dtype=float, na_value=np.nan))
    height = np.where(pd.notna(joined["ref_height"]), _numeric(joined["ref_height"]),
                      joined["image_height"].to_numpy(dtype=float, na_value=np.nan))
    percent = joined["percent"].to_numpy(dtype=bool)
    sx = np.where(percent, width / 100.0, 1.0)
    sy = np.where(percent, height / 100.0, 1.0)
    x, y = _numeric(joined["x"]) * sx, _numeric(joined["y"]) * sy
    w, h = _numeric(joined["w"]) * sx, _numeric(joined["h"]) * sy
    joined["x_min"], joined["y_min"], joined["x_max"], joined["y_max"] = x, y, x + w, y + h
    joined["geometry_wkb"] = None
    _polygons_to_pixels(joined, sx, sy)
    joined["image_width"], joined["image_height"] = width, height
    joined["lead_time_s"] = _numeric(joined["lead_time_s"])

    problem = joined["problem"].to_numpy(dtype=object)
    detail = joined["problem_detail"].to_numpy(dtype=object)
    no_problem = problem == ""
    task_missing = no_problem & ~known_task
    problem[task_missing] = "unknown_task"
    detail[task_missing] = [
        f"task id {t!r} is not among the tasks of batch {batch_id!r} sent to vendor {vendor!r}"
        if pd.notna(t) else f"image {img!r} matches no task of batch {batch_id!r}"
        for t, img in zip(joined.loc[task_missing, "task_id"], joined.loc[task_missing, "image_name"])]
    seen_image = joined["image_name"].map(_base_name).astype("string")
    sent_image = joined["image_file"].map(_base_name).astype("string")
    image_mismatch = (problem == "") & (seen_image != sent_image).fillna(False).to_numpy(dtype=bool)
    problem[image_mismatch] = "task_image_mismatch"
    detail[image_mismatch] = [
        f"task {t} shows image {img!r} but was sent with {sent!r}" for t, img, sent in
        zip(joined.loc[image_mismatch, "task_id"], joined.loc[image_mismatch, "image_name"],
            joined.loc[image_mismatch, "image_file"])]
    no_annotator = (problem == "") & joined["annotator_id"].isna().to_numpy()
    problem[no_annotator], detail[no_annotator] = "missing_annotator", "completed_by is missing"
    _flag_duplicate_answers_in_file(joined, problem, detail)

    joined["batch_id"], joined["vendor"] = batch_id, vendor
    joined["source_file"], joined["source_sha256"] = source_file, sha256
    ok = problem == ""
    accepted = ANNOTATIONS.conform(joined.loc[ok])
    bad = joined.loc[~ok]
    quarantined = quarantine_rows(
        STAGE, partition_date, source_file, bad["record_ref"].astype(str).to_numpy(),
        problem[~ok], detail[~ok],
        item_id=bad["item_id"].to_numpy(dtype=object), annotator_id=bad["annotator_id"].to_numpy(dtype=object),
        annotation_id=bad["annotation_id"].to_numpy(dtype=object))
    return accepted, quarantined


def _base_name(path: Any) -> str | None:
    return PurePosixPath(path).name if isinstance(path, str) else None


def _polygons_to_pixels(df: pd.DataFrame, sx: np.ndarray, sy: np.ndarray) -> None:
    """Scale all polygons at once, build them with shapely 2, store WKB and bounds."""
    has_points = df["points"].notna().to_numpy()
    if not has_points.any():
        return
    rows = np.flatnonzero(has_points)
    arrays = df["points"].to_numpy()[rows]
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    coords = np.concatenate(arrays) * np.column_stack([np.repeat(sx[rows], counts),
                                                       np.repeat(sy[rows], counts)])
    ring_index = np.repeat(np.arange(len(rows)), counts)
    finite_per_ring = np.bincount(ring_index, weights=np.isfinite(coords).all(axis=1),
                                  minlength=len(rows)) == counts
    keep = finite_per_ring[ring_index]
    polygons = np.full(len(rows), None, dtype=object)
    if keep.any():
        kept_rings = np.flatnonzero(finite_per_ring)
        rings = shapely.linearrings(coords[keep], indices=np.searchsorted(kept_rings, ring_index[keep]))
        polygons[kept_rings] = shapely.polygons(rings)
    bounds = np.full((len(rows), 4), np.nan)
    bounds[finite_per_ring] = shapely.bounds(polygons[finite_per_ring].astype(object))
    for col, values in zip(("x_min", "y_min", "x_max", "y_max"), bounds.T):
        df.loc[rows, col] = values
    wkb = np.full(len(rows), None, dtype=object)
    if finite_per_ring.any():
        wkb[finite_per_ring] = shapely.to_wkb(polygons[finite_per_ring].astype(object))
    df.loc[rows, "geometry_wkb"] = pd.Series(list(wkb), index=rows, dtype=object)


def _flag_duplicate_answers_in_file(df: pd.DataFrame, problem: np.ndarray, detail: np.ndarray) -> None:
    """One annotation per annotator per task: a second annotation in the same file is a duplicate.

    (Across files the QA suite finds them; here we still know which results belong together.)
    """
    live = problem == ""
    keys = df.loc[live, ["task_id", "annotator_id", "ann_ref"]].astype(str)
    first_ann = keys.groupby(["task_id", "annotator_id"], sort=False)["ann_ref"].transform("first")
    dup = np.zeros(len(df), dtype=bool)
    dup[np.flatnonzero(live)] = (keys["ann_ref"] != first_ann).to_numpy()
    problem[dup] = "duplicate_answer"
    detail[dup] = [f"annotator {a} already answered task {t} in this file (annotation {f}); "
                   "one answer per annotator per task"
                   for a, t, f in zip(df.loc[dup, "annotator_id"], df.loc[dup, "task_id"],
                                      first_ann.reindex(df.index[dup]))]
