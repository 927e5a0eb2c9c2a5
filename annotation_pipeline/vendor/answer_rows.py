"""Parsed rows of one return file -> ANNOTATIONS rows and QUARANTINE rows, vectorized.

The format parsers (``label_studio_format``, ``coco_format``) hand over rows whose scalars are
already floats, short strings or None. Here they are joined to our side of the handoff (which
item each task is), scaled to pixels in the frame of the image as we sent it, and split into
accepted and quarantined rows. One file-level judgement is made here too: a file none of
whose images was sent in this batch is another batch's export (``wrong_batch``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE, quarantine_rows
from annotation_pipeline.vendor.export_format import WHOLE_FILE

# Row problems that a foreign file produces on every row: they become ``wrong_batch``.
_FOREIGN_SYMPTOMS = ("", "unknown_task", "task_image_mismatch")


@dataclass
class RowsOutcome:
    accepted: pd.DataFrame      # ANNOTATIONS
    quarantined: pd.DataFrame   # QUARANTINE
    file_reason: str = ""       # set when the file as a whole is quarantined (its rows all are)
    file_detail: str = ""


def finalize_rows(parsed: pd.DataFrame, *, source_file: str, sha256: str, batch_id: str, vendor: str,
                  tasks: pd.DataFrame, partition_date: str, stage: str) -> RowsOutcome:
    """Join the handoff tasks, convert to pixels, and split accepted from quarantined rows."""
    if parsed.empty:
        return RowsOutcome(ANNOTATIONS.empty(), QUARANTINE.empty())
    batch_tasks = tasks[(tasks["batch_id"] == batch_id) & (tasks["vendor"] == vendor)]
    joined, known_task = _join_tasks(parsed.reset_index(drop=True), batch_tasks, sha256)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 * 3.2 is inf: QA names it, with its row
        _to_pixels(joined)
    problem = joined["problem"].to_numpy(dtype=object, copy=True)
    detail = joined["problem_detail"].to_numpy(dtype=object, copy=True)
    _flag_task_problems(joined, known_task, problem, detail, batch_id=batch_id, vendor=vendor)
    file_reason, file_detail = _flag_wrong_batch(joined, batch_tasks, tasks, problem, detail, batch_id)
    if not file_reason:
        _flag_duplicate_answers_in_file(joined, problem, detail)

    joined["batch_id"], joined["vendor"] = batch_id, vendor
    joined["source_file"], joined["source_sha256"] = source_file, sha256
    ok = problem == ""
    bad = joined.loc[~ok]
    quarantined = quarantine_rows(
        stage, partition_date, source_file, bad["record_ref"].astype(str).to_numpy(),
        problem[~ok], detail[~ok],
        item_id=bad["item_id"].to_numpy(dtype=object), annotator_id=bad["annotator_id"].to_numpy(dtype=object),
        annotation_id=bad["annotation_id"].to_numpy(dtype=object))
    return RowsOutcome(ANNOTATIONS.conform(joined.loc[ok]), quarantined, file_reason, file_detail)


def _base_names(paths: pd.Series) -> pd.Series:
    """The file name of each path (what follows the last ``/``), NA where there is none; one
    Arrow regex over the column, as ``str.rpartition("/")[2]`` would give per row."""
    text = paths.where(paths.map(type, na_action="ignore") == str) if paths.dtype == object else paths
    return text.astype("string").str.replace(r"(?s)^.*/", "", regex=True)


def _is_in(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """values.isin(pool) for text columns as one Arrow hash lookup (pandas builds a scalar per
    pool entry first: seconds for a day's 100k image names)."""
    found = pc.is_in(pa.array(values.to_numpy(dtype=object), pa.string()),
                     value_set=pa.array(pool.dropna().unique().astype(object), pa.string()))
    return found.to_numpy(zero_copy_only=False).astype(bool)


def _join_tasks(df: pd.DataFrame, batch_tasks: pd.DataFrame, sha256: str) -> tuple[pd.DataFrame, np.ndarray]:
    # COCO without our task_id attribute: map images to tasks by file name.
    by_file = pd.Series(batch_tasks["task_id"].to_numpy(),
                        index=_base_names(batch_tasks["image_file"]).to_numpy())
    by_file = by_file[~by_file.index.duplicated()]
    image_base = _base_names(df["image_name"])
    df["image_base"] = image_base
    df["task_id"] = df["task_id"].where(df["task_id"].notna(), image_base.map(by_file)).astype("string")
    joined = df.merge(batch_tasks, on="task_id", how="left", suffixes=("", "_task"),
                      validate="many_to_one", indicator=True)
    known_task = (joined["_merge"] == "both").to_numpy()
    # COCO files without annotator attributes: the file is one annotator's work.
    joined["annotator_id"] = joined["annotator_id"].replace(WHOLE_FILE, f"file-{sha256[:8]}")
    joined["annotation_id"] = _annotation_ids(joined, sha256)
    return joined, known_task


def _annotation_ids(joined: pd.DataFrame, sha256: str) -> list[str]:
    """sha256 of ``file sha256|task|annotation|result|record ref`` per row, cut to 16 hex digits.

    The keys are joined by Arrow as UTF-8 bytes; the hash itself is one call per row (there is
    no vectorized sha256 here, and the ids of earlier releases must not change).
    """
    parts = [_as_key_text(joined[c]) for c in ("task_id", "ann_ref", "result_ref", "record_ref")]
    keys = pc.binary_join_element_wise(sha256, *parts, "|").cast(pa.binary())
    return [hashlib.sha256(key).hexdigest()[:16] for key in keys.to_pylist()]


def _as_key_text(column: pd.Series) -> pa.Array:
    """Each value as ``f"{value}"`` writes it (a missing task id is ``<NA>``), as Arrow strings."""
    values = column.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) != "string":  # NA, None or numbers: rare
        values = np.asarray([f"{v}" for v in values], dtype=object)
    return pa.array(values, pa.string())


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def unrotate(u: np.ndarray, v: np.ndarray, rotation: np.ndarray, width: np.ndarray, height: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel points of an image shown turned ``rotation`` degrees clockwise -> its own frame.

    ``width``/``height`` are the image's own (unrotated) size. A quarter turn clockwise shows
    pixel (x, y) at (height - y, x); the inverse is x = v, y = height - u.
    """
    x = np.select([rotation == 90, rotation == 180, rotation == 270], [v, width - u, width - v], u)
    y = np.select([rotation == 90, rotation == 180, rotation == 270], [height - u, height - v, u], v)
    return x, y


def _to_pixels(joined: pd.DataFrame) -> None:
    """Percentages (Label Studio) or pixels (COCO) -> pixels in the frame of the image we sent."""
    sent_w = joined["image_width"].to_numpy(dtype=float, na_value=np.nan)
    sent_h = joined["image_height"].to_numpy(dtype=float, na_value=np.nan)
    ref_w, ref_h = _numeric(joined["ref_width"]), _numeric(joined["ref_height"])
    rotation = _numeric(joined["rotation"])
    turned = rotation != 0
    # Unturned: the size the annotator saw (original_width/height) wins. Turned: the frame is
    # the image as we sent it, whatever size the tool reported for its rotated view.
    width = np.where(turned & np.isfinite(sent_w), sent_w, np.where(np.isfinite(ref_w), ref_w, sent_w))
    height = np.where(turned & np.isfinite(sent_h), sent_h, np.where(np.isfinite(ref_h), ref_h, sent_h))
    quarter = (rotation == 90) | (rotation == 270)
    shown_w, shown_h = np.where(quarter, height, width), np.where(quarter, width, height)
    percent = joined["percent"].to_numpy(dtype=bool)
    sx = np.where(percent, shown_w / 100.0, 1.0)
    sy = np.where(percent, shown_h / 100.0, 1.0)
    u0, v0 = _numeric(joined["x"]) * sx, _numeric(joined["y"]) * sy
    u1, v1 = u0 + _numeric(joined["w"]) * sx, v0 + _numeric(joined["h"]) * sy
    if turned.any():
        (u0, v0), (u1, v1) = (unrotate(u0, v0, rotation, width, height),
                              unrotate(u1, v1, rotation, width, height))
        (u0, u1), (v0, v1) = (np.minimum(u0, u1), np.maximum(u0, u1)), (np.minimum(v0, v1), np.maximum(v0, v1))
    joined["x_min"], joined["y_min"], joined["x_max"], joined["y_max"] = u0, v0, u1, v1
    joined["geometry_wkb"] = None
    _polygons_to_pixels(joined, sx, sy, rotation, width, height)
    joined["image_width"], joined["image_height"] = width, height
    joined["lead_time_s"] = _numeric(joined["lead_time_s"])


def _polygons_to_pixels(df: pd.DataFrame, sx: np.ndarray, sy: np.ndarray, rotation: np.ndarray,
                        width: np.ndarray, height: np.ndarray) -> None:
    """Scale (and turn back) all polygons at once, build them with shapely 2, store WKB and bounds."""
    has_points = df["points"].notna().to_numpy()
    if not has_points.any():
        return
    rows = np.flatnonzero(has_points)
    arrays = df["points"].to_numpy()[rows]
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    per_point = np.repeat(rows, counts)
    coords = np.concatenate(arrays) * np.column_stack([sx[per_point], sy[per_point]])
    x, y = unrotate(coords[:, 0], coords[:, 1], rotation[per_point], width[per_point], height[per_point])
    coords = np.column_stack([x, y])
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


def _flag_task_problems(joined: pd.DataFrame, known_task: np.ndarray, problem: np.ndarray,
                        detail: np.ndarray, *, batch_id: str, vendor: str) -> None:
    task_missing = (problem == "") & ~known_task
    problem[task_missing] = "unknown_task"
    detail[task_missing] = [
        f"task id {t!r} is not among the tasks of batch {batch_id!r} sent to vendor {vendor!r}"
        if pd.notna(t) else f"image {img!r} matches no task of batch {batch_id!r}"
        for t, img in zip(joined.loc[task_missing, "task_id"], joined.loc[task_missing, "image_name"])]
    seen_image = joined["image_base"]
    sent_image = _base_names(joined["image_file"])
    image_mismatch = (problem == "") & (seen_image != sent_image).fillna(False).to_numpy(dtype=bool)
    problem[image_mismatch] = "task_image_mismatch"
    detail[image_mismatch] = [
        f"task {t} shows image {img!r} but was sent with {sent!r}" for t, img, sent in
        zip(joined.loc[image_mismatch, "task_id"], joined.loc[image_mismatch, "image_name"],
            joined.loc[image_mismatch, "image_file"])]
    no_annotator = (problem == "") & joined["annotator_id"].isna().to_numpy()
    problem[no_annotator], detail[no_annotator] = "missing_annotator", "completed_by is missing"


def _flag_wrong_batch(joined: pd.DataFrame, batch_tasks: pd.DataFrame, tasks: pd.DataFrame,
                      problem: np.ndarray, detail: np.ndarray, batch_id: str) -> tuple[str, str]:
    """A file none of whose named images was sent in this batch is another batch's export.

    Task ids repeat across batches (1..n each); image names carry the batch (``vendor.handoff``
    names them ``t00001-<batch digest>.png``), so they tell a foreign export apart. Without
    handoff tasks for the batch nothing can be told, and rows stay ``unknown_task``.
    """
    if batch_tasks.empty:
        return "", ""
    named = joined["image_base"].dropna()
    if named.empty or _is_in(named, _base_names(batch_tasks["image_file"])).any():
        return "", ""
    elsewhere = tasks.loc[_is_in(_base_names(tasks["image_file"]), named), "batch_id"]
    others = sorted(set(elsewhere) - {batch_id})
    where = (f"they were sent in batch {', '.join(others)}: move the file to that batch's inbox folder"
             if others else "they were never sent to this vendor")
    file_detail = (f"none of the {named.nunique()} images this file names (e.g. {named.iloc[0]!r}) was sent in "
                   f"batch {batch_id!r}; {where}")
    foreign = np.isin(problem, _FOREIGN_SYMPTOMS)
    problem[foreign] = "wrong_batch"
    detail[foreign] = file_detail
    return "wrong_batch", file_detail


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
