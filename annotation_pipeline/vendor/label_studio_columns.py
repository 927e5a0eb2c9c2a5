"""Label Studio exports parsed column by column: the plain tasks of a file, all at once.

A day's returns hold about a million results. ``label_studio_format`` judges them one by one
in Python and says precisely what is wrong with each; that took most of a 1M-annotation
partition's time. Here the decoded document is handed to Arrow once (``pa.array`` infers one
nested type for all tasks, in C++), flattened to one row per result, and every rule the
careful parser applies to one result is applied to all of them as a mask.

A task is *plain* when every rule holds for every annotation and result in it; its rows are
built here. Any other task (a null, a bad id, an empty, cancelled or duplicate-less annotation
without results, an unsupported type, a rotated box, a label problem, odd polygon points...)
is returned by index to the careful parser, which names what is wrong, row by row. A file
whose values Arrow cannot give one type (an id that is a number in one task and text in
another, a lone surrogate, an integer beyond int64), or whose fields have types the plain
shape never has, goes to the careful parser whole. Both parsers therefore give the same rows
(``annotation_pipeline_tests/vendor/test_columnar_intake.py`` checks it on the malformed
corpus); this one only for the tasks whose answer is plain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from annotation_pipeline.vendor.export_format import KIND_BY_LABEL_STUDIO_TYPE, MAX_TEXT, PARSED_COLUMNS

_INT, _FLOAT, _STR = pa.types.is_integer, pa.types.is_floating, pa.types.is_string
_STRUCT, _LIST, _BOOL = pa.types.is_struct, pa.types.is_list, pa.types.is_boolean
_MAX_TASK_ID = 10 ** 18   # task ids are integers of at most 18 digits (export_format.task_id_text)
_MAX_IMAGE_NAME = 4 * MAX_TEXT  # longer names are no name (export_format.image_name)


class Irregular(Exception):
    """The file's shape is not the plain one: parse all of it carefully."""


@dataclass
class ColumnarParse:
    rows: pd.DataFrame          # PARSED_COLUMNS + "task_index", rows of the plain tasks, in file order
    careful_tasks: np.ndarray   # indices of the tasks the careful parser must read


def parse_plain_tasks(document: list) -> ColumnarParse:
    """Rows of the plain tasks of a Label Studio export, and which tasks need the careful parser."""
    if not document:
        return ColumnarParse(_empty_rows(), np.zeros(0, dtype=np.int64))
    try:
        tasks = pa.array(document)
    except (pa.ArrowException, UnicodeError, OverflowError, TypeError, ValueError) as exc:
        raise Irregular(f"Arrow cannot type the file: {type(exc).__name__}") from None
    if not _STRUCT(tasks.type):
        raise Irregular("tasks are not objects")
    _refuse_booleans_among_numbers(document, tasks.type)
    task_ok, task_id, image = _task_columns(tasks)
    ann, ann_task, ann_pos = _flatten(_field(tasks, "annotations", _LIST))
    ann_ok, ann_ref, annotator, lead_time = _annotation_columns(ann, ann_pos)
    res, res_ann, res_pos = _flatten(_field(ann, "result", _LIST))
    has_results = np.bincount(res_ann, minlength=len(ann)) > 0
    res_ok, result_ref, kind, label, geometry = _result_columns(res, res_pos)
    res_task = ann_task[res_ann]

    # a task is plain when it, each of its annotations and each of their results are
    bad_task = ~task_ok
    np.logical_or.at(bad_task, ann_task, ~(ann_ok & has_results))
    np.logical_or.at(bad_task, res_task, ~res_ok)
    keep = ~bad_task[res_task]
    rows = _rows(keep, res_task, res_ann, res_pos, ann_pos, task_id, image, ann_ref, annotator, lead_time,
                 result_ref, kind, label, geometry)
    return ColumnarParse(rows, np.flatnonzero(bad_task))


# ---------------------------------------------------------------- Arrow helpers

def _refuse_booleans_among_numbers(document: list, inferred: pa.DataType) -> None:
    """Arrow infers ``[1.5, true]`` as doubles, ``true`` becoming 1.0; the careful parser calls a
    boolean coordinate not a number. Converting again, only the double fields and declared
    int64, raises on any boolean (and on NaN or infinity) there, so such a file is read carefully."""
    doubles = _only_doubles_as_ints(inferred)
    if doubles is None:
        return
    try:
        pa.array(document, type=doubles)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        raise Irregular("a boolean or a non-finite value among numbers") from None


def _only_doubles_as_ints(data_type: pa.DataType) -> pa.DataType | None:
    """``data_type`` pruned to the paths that end in a double, each declared int64 (None: no double)."""
    if _FLOAT(data_type):
        return pa.int64()
    if _LIST(data_type):
        inner = _only_doubles_as_ints(data_type.value_type)
        return None if inner is None else pa.list_(inner)
    if _STRUCT(data_type):
        kept = [(f.name, _only_doubles_as_ints(f.type)) for f in data_type]
        fields = [pa.field(name, t) for name, t in kept if t is not None]
        return pa.struct(fields) if fields else None
    return None


def _field(struct: pa.Array, name: str, *allowed) -> pa.Array:
    """Child ``name`` of a struct array (null where the parent is), all-null when no row has it.

    Raises Irregular when its type is none of ``allowed``: the careful parser then reads the file.
    """
    index = struct.type.get_field_index(name)
    if index < 0:
        return pa.nulls(len(struct))
    child = pc.struct_field(struct, [index])
    if not pa.types.is_null(child.type) and not any(test(child.type) for test in allowed):
        raise Irregular(f"field {name!r} has type {child.type}")
    return child


def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The items of a list column, the row each came from, and its position in that list."""
    if pa.types.is_null(lists.type):
        return pa.array([], pa.struct([])), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    items = pc.list_flatten(lists)
    if not (_STRUCT(items.type) or pa.types.is_null(items.type)):
        raise Irregular(f"list of {items.type}, expected objects")
    if pa.types.is_null(items.type):  # [null, ...]: entries that are not objects
        items = pa.nulls(len(items), pa.struct([]))
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    position = np.arange(len(parent)) - np.searchsorted(parent, parent, side="left")
    return items, parent, position


def _valid(array: pa.Array) -> np.ndarray:
    return array.is_valid().to_numpy(zero_copy_only=False)


def _flags(array: pa.Array) -> np.ndarray:
    """A boolean column as numpy, False where null."""
    if pa.types.is_null(array.type):
        return np.zeros(len(array), dtype=bool)
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)


def _floats(array: pa.Array) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    if pa.types.is_null(array.type):
        return np.full(len(array), np.nan)
    return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)


def _texts(array: pa.Array) -> np.ndarray:
    """A string or integer column as an object array of str, None where null."""
    if pa.types.is_null(array.type):
        return np.full(len(array), None, dtype=object)
    return pc.cast(array, pa.string()).to_numpy(zero_copy_only=False)


def _text_lengths(array: pa.Array) -> np.ndarray:
    if not _STR(array.type):
        return np.zeros(len(array), dtype=np.int64)
    return pc.fill_null(pc.utf8_length(array), 0).to_numpy()


def _reference(ids: pa.Array, position: np.ndarray) -> np.ndarray:
    """export_format.reference for a column: the id as text when usable, else the position."""
    text = _texts(ids)
    usable = _valid(ids) & (_text_lengths(ids) <= MAX_TEXT)
    return np.where(usable, text, position.astype(str).astype(object))


# ---------------------------------------------------------------- tasks, annotations, results

def _task_columns(tasks: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = _field(tasks, "id", _INT)
    raw = pc.fill_null(ids, -1).to_numpy() if _INT(ids.type) else np.full(len(tasks), -1)
    ok = _valid(tasks) & (raw >= 0) & (raw < _MAX_TASK_ID)
    image = _field(_field(tasks, "data", _STRUCT), "image", _STR)
    names = _texts(image)
    names[_text_lengths(image) > _MAX_IMAGE_NAME] = None
    return ok, _texts(ids), names


def _annotation_columns(ann: pa.Array, position: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cancelled = _field(ann, "was_cancelled", _BOOL)
    not_cancelled = ~_flags(cancelled)
    annotator, annotator_ok = _annotators(_field(ann, "completed_by", _STRUCT, _INT, _STR))
    ok = _valid(ann) & not_cancelled & annotator_ok
    lead_time = _floats(_field(ann, "lead_time", _INT, _FLOAT))
    return ok, _reference(_field(ann, "id", _INT, _STR), position), annotator, lead_time


def _annotators(completed_by: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """label_studio_format.annotator_from_completed_by for a column: (annotator or None, usable)."""
    n = len(completed_by)
    annotator = np.full(n, None, dtype=object)
    ok = np.ones(n, dtype=bool)
    if _STRUCT(completed_by.type):
        email = _field(completed_by, "email", _STR)
        user = _field(completed_by, "id", _INT, _STR)
        if _STR(email.type):
            local_part = pc.list_element(pc.split_pattern(email, "@", max_splits=1), 0)
            has_local = _flags(pc.match_substring(email, "@")) & (_text_lengths(local_part) > 0)
            annotator[has_local] = _texts(local_part)[has_local]
            ok &= ~(has_local & (_text_lengths(local_part) > MAX_TEXT))
        else:
            has_local = np.zeros(n, dtype=bool)
        by_id, id_ok = _user_ids(user)
        annotator = np.where(has_local, annotator, by_id)
        ok &= has_local | id_ok
    elif not pa.types.is_null(completed_by.type):
        annotator, ok = _user_ids(completed_by)
    return annotator, ok


def _user_ids(user: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``user-<id>`` for integer or non-empty text ids, None otherwise; usable unless too long."""
    text = _texts(user)
    present = _valid(user) & ((_text_lengths(user) > 0) | _INT(user.type))
    annotator = np.full(len(user), None, dtype=object)
    if present.any():
        annotator[present] = np.char.add("user-", text[present].astype(str)).astype(object)
    return annotator, ~(present & (_text_lengths(user) + len("user-") > MAX_TEXT))


def _result_columns(res: pa.Array, position: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    n = len(res)
    rtype = _texts(_field(res, "type", _STR))
    kind = pd.Series(rtype, dtype=object).map(KIND_BY_LABEL_STUDIO_TYPE).to_numpy(dtype=object)
    value = _field(res, "value", _STRUCT)
    ok = _valid(res) & pd.notna(kind) & _valid(value)
    geometry: dict[str, np.ndarray] = {}
    for side in ("original_width", "original_height"):  # absent, or a positive number of pixels
        size = _field(res, side, _INT, _FLOAT)
        geometry[side] = _floats(size)
        with np.errstate(invalid="ignore"):
            ok &= ~_valid(size) | (np.isfinite(geometry[side]) & (geometry[side] > 0))
    image_rotation = _field(res, "image_rotation", _INT, _FLOAT)
    with np.errstate(invalid="ignore"):
        rotation = np.where(_valid(image_rotation), np.mod(_floats(image_rotation), 360.0), 0.0)
    ok &= np.isin(rotation, (0.0, 90.0, 180.0, 270.0))  # NaN/inf rotations and odd angles are not plain
    geometry["rotation"] = rotation
    label = np.full(n, None, dtype=object)
    for ls_type in KIND_BY_LABEL_STUDIO_TYPE:
        mine = rtype == ls_type
        if mine.any():
            text, single = _single_labels(_field(value, ls_type, _LIST))
            label[mine] = text[mine]
            ok &= ~mine | single
    is_box, is_polygon = kind == "box", kind == "polygon"
    box_rotation = _field(value, "rotation", _INT, _FLOAT)  # absent or 0: an axis-aligned box
    ok &= ~is_box | ~_valid(box_rotation) | (_floats(box_rotation) == 0)
    for key in ("x", "y", "width", "height"):
        geometry[key] = np.where(is_box, _floats(_field(value, key, _INT, _FLOAT)), np.nan)
    points, points_ok = _polygon_points(_field(value, "points", _LIST), is_polygon)
    geometry["points"] = points
    ok &= ~is_polygon | points_ok
    return ok, _reference(_field(res, "id", _INT, _STR), position), kind, label, geometry


def _single_labels(labels: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(the one label of each list, whether the list is exactly one non-empty short string)."""
    n = len(labels)
    if pa.types.is_null(labels.type):
        return np.full(n, None, dtype=object), np.zeros(n, dtype=bool)
    items = pc.list_flatten(labels)
    if not (_STR(items.type) or pa.types.is_null(items.type)):
        raise Irregular(f"labels of type {items.type}")
    counts = pc.fill_null(pc.list_value_length(labels), 0).to_numpy()
    one = counts == 1
    first = np.cumsum(counts) - counts
    text = np.full(n, None, dtype=object)
    lengths = np.zeros(n, dtype=np.int64)
    if one.any():
        picked = items.take(pa.array(first[one]))
        text[one] = _texts(picked)
        lengths[one] = pc.fill_null(pc.utf8_length(picked), 0).to_numpy() if _STR(picked.type) else 0
    return text, one & (lengths > 0) & (lengths <= MAX_TEXT)


def _polygon_points(points: pa.Array, is_polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each polygon's points as an (n, 2) float array, and whether they are well formed (>= 3 pairs)."""
    n = len(points)
    arrays = np.full(n, None, dtype=object)
    if not is_polygon.any() or pa.types.is_null(points.type):
        return arrays, np.zeros(n, dtype=bool)
    pairs = pc.list_flatten(points)
    if not _LIST(pairs.type):
        raise Irregular(f"polygon points of type {pairs.type}")
    coords = pc.list_flatten(pairs)
    if not (_INT(coords.type) or _FLOAT(coords.type)):
        raise Irregular(f"polygon coordinates of type {coords.type}")
    n_pairs = pc.fill_null(pc.list_value_length(points), 0).to_numpy()
    pair_len = pc.list_value_length(pairs)
    pair_ok = (pc.fill_null(pair_len, 0).to_numpy() == 2) & _valid(pairs)
    owner = pc.list_parent_indices(points).to_numpy().astype(np.int64)
    coord_ok = _valid(coords)
    coord_owner = owner[pc.list_parent_indices(pairs).to_numpy().astype(np.int64)]
    bad = np.zeros(n, dtype=bool)
    np.logical_or.at(bad, owner, ~pair_ok)
    np.logical_or.at(bad, coord_owner, ~coord_ok)
    ok = _valid(points) & ~bad & (n_pairs >= 3)
    take = ok & is_polygon
    if take.any():
        values = _floats(coords)
        mine = take[coord_owner]
        parts = np.split(values[mine].reshape(-1, 2), np.cumsum(n_pairs[take])[:-1])
        arrays[take] = np.fromiter(parts, dtype=object, count=len(parts))  # never broadcast to 3-D
    return arrays, ok


# ---------------------------------------------------------------- the parsed rows

def _rows(keep, res_task, res_ann, res_pos, ann_pos, task_id, image, ann_ref, annotator, lead_time,
          result_ref, kind, label, geometry) -> pd.DataFrame:
    """PARSED_COLUMNS rows of the kept results, with the task index they came from."""
    n = int(keep.sum())
    if n == 0:
        return _empty_rows()
    t, a = res_task[keep], res_ann[keep]
    tid, aref, rref = task_id[t], ann_ref[a], result_ref[keep]
    parts = ["task=", tid, " annotation=", aref, " result=", rref, " [", t, "].annotations[", ann_pos[a],
             "].result[", res_pos[keep], "]"]
    where = pc.binary_join_element_wise(
        *[p if isinstance(p, str) else pa.array(p.astype(str) if p.dtype != object else p, pa.string())
          for p in parts], "")
    columns: dict[str, Any] = {
        "record_ref": where.to_numpy(zero_copy_only=False), "task_id": tid, "ann_ref": aref, "result_ref": rref,
        "annotator_id": annotator[a], "lead_time_s": lead_time[a], "kind": kind[keep], "label": label[keep],
        "x": geometry["x"][keep], "y": geometry["y"][keep], "w": geometry["width"][keep],
        "h": geometry["height"][keep], "points": geometry["points"][keep], "percent": np.ones(n, dtype=bool),
        "ref_width": geometry["original_width"][keep], "ref_height": geometry["original_height"][keep],
        "rotation": geometry["rotation"][keep], "image_name": image[t],
        "problem": np.full(n, "", dtype=object), "problem_detail": np.full(n, "", dtype=object)}
    frame = pd.DataFrame({c: pd.Series(columns[c], dtype=object if c in _OBJECT else None) for c in PARSED_COLUMNS})
    frame["task_index"] = t
    return frame


_OBJECT = {"record_ref", "task_id", "ann_ref", "result_ref", "annotator_id", "kind", "label", "points",
           "image_name", "problem", "problem_detail"}


def _empty_rows() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in PARSED_COLUMNS})
    frame["task_index"] = pd.Series(dtype=np.int64)
    return frame
