"""The narrow frame of derived check columns that the row suite validates, built vectorized.

GX filters the whole validated frame once per expectation, so it gets numbers, booleans and
categoricals only (area, aspect, polygon validity, duplicate flags computed with numpy, pandas,
Arrow and shapely 2), one row per annotation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from annotation_pipeline.contracts import ANNOTATIONS
from annotation_pipeline.ontology import ontology_dict


def _task_keys(a: pd.DataFrame, tasks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per annotation: a dense code of its (batch_id, task_id), and the row of ``tasks`` that
    handed that task out (-1 when the handoff never sent it)."""
    batch_codes, batches = _codes(a["batch_id"])
    task_codes, task_ids = _codes(a["task_id"])
    raw_key = (batch_codes + 1) * (len(task_ids) + 1) + (task_codes + 1)
    task_key, raw_of_key = pd.factorize(raw_key)  # dense codes; raw_of_key[code] is its raw key
    task_key = task_key.astype(np.int64)
    n_keys = len(raw_of_key)
    sent_batch = _positions_in(tasks["batch_id"].astype(a["batch_id"].dtype), batches)
    sent_task = _positions_in(tasks["task_id"].astype(a["task_id"].dtype), task_ids)
    received = (sent_batch >= 0) & (sent_task >= 0)  # handoff rows that some annotation names
    handoff_row = np.full(n_keys + 1, -1, dtype=np.int64)  # by task key; the extra slot stays unused
    if received.any():
        sent_raw = (sent_batch[received] + 1) * (len(task_ids) + 1) + (sent_task[received] + 1)
        sent_key = pd.Index(raw_of_key).get_indexer(sent_raw)  # -1 (the extra slot) when never answered
        rows = np.flatnonzero(received)
        # the first handoff row of a key wins, as drop_duplicates(keep="first") would
        handoff_row[sent_key[::-1]] = rows[::-1]
    return task_key, handoff_row[task_key]


def _positions_in(values: pd.Series, uniques: pd.Index) -> np.ndarray:
    """Position of each value in ``uniques`` (-1 when absent or null).

    Arrow's ``index_in`` hashes the strings where they are; ``Index.get_indexer`` first
    converted both sides to Python objects (ten times slower at 100k tasks).
    """
    if not len(values) or not len(uniques):
        return np.full(len(values), -1, dtype=np.int64)
    try:
        found = pc.index_in(pa.array(values, from_pandas=True), value_set=pa.array(uniques, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # mixed or exotic dtypes
        return uniques.get_indexer(values).astype(np.int64)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _first_row_of(codes: np.ndarray) -> np.ndarray:
    """For each row, the first row with the same (non-negative, dense) code: one pass, no sort."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    order = np.arange(len(codes), dtype=np.int64)
    first[codes[::-1]] = order[::-1]  # the last write per code wins: the earliest row
    return first[codes]


def _required_columns(a: pd.DataFrame) -> list[str]:
    return [name for name, col in ANNOTATIONS.columns.items() if not col.nullable and name in a]


def missing_required(a: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The required columns that hold a missing value, and rows x those columns, True where missing.

    Columns Arrow knows to hold no null are skipped without a scan or an allocation: on this
    machine the fresh memory of a 1M-row boolean array per column cost more than the scan.
    """
    with_nulls = []
    for name in _required_columns(a):
        values = a[name].array
        if isinstance(values, pd.arrays.ArrowExtensionArray):  # Arrow keeps the count of nulls
            has_nulls = values.__arrow_array__().null_count > 0
        else:
            has_nulls = a[name].hasnans
        if has_nulls:
            with_nulls.append(name)
    if not with_nulls:
        return [], np.zeros((len(a), 0), dtype=bool)
    return with_nulls, a[with_nulls].isna().to_numpy()


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values)  # NA -> -1
    return codes.astype(np.int64), pd.Index(uniques)


def _per_category(codes: np.ndarray, categories: pd.Index, lookup: dict[str, float]) -> np.ndarray:
    """Look a per-class number up once per category, then broadcast by code (NaN if unknown)."""
    table = np.append(np.array([lookup.get(str(c), np.nan) for c in categories], dtype=float), np.nan)
    return table[codes]  # code -1 picks the trailing NaN


def _duplicate_rows(*columns: np.ndarray) -> np.ndarray:
    """Rows whose values in all ``columns`` equal an earlier row's (keep-first semantics of
    ``DataFrame.duplicated``), exactly.

    One 64-bit hash per row finds candidates in a single hash-table pass (DataFrame.duplicated
    factorizes every column: 0.7 s at 1M rows); each candidate is then compared with the first
    row of its hash, so a hash collision can never mark a distinct object as a duplicate.
    Columns are hashed one at a time (no stacked copy of the key).
    """
    n = len(columns[0]) if columns else 0
    if not n:
        return np.zeros(0, dtype=bool)
    row_hash = np.zeros(n, dtype=np.uint64)
    for col in columns:  # order-sensitive mix of the column hashes (FNV-style)
        bits = np.ascontiguousarray(col + 0.0 if col.dtype.kind == "f" else col)  # + 0.0 folds -0.0 into 0.0
        row_hash *= np.uint64(0x100000001B3)
        row_hash ^= pd.util.hash_array(bits.view(np.uint64), categorize=False)
    codes, _ = pd.factorize(row_hash)
    first = _first_row_of(codes)
    rows = np.flatnonzero(first != np.arange(n))
    same = np.ones(len(rows), dtype=bool)
    for col in columns:
        same &= (col[rows] == col[first[rows]])
    out = np.zeros(n, dtype=bool)
    out[rows[same]] = True
    return out


@dataclass
class _Geometry:
    """Per-row geometry checks of boxes and polygons (see derive_check_columns for the columns)."""
    columns: dict[str, np.ndarray]
    edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]   # x_min, y_min, x_max, y_max
    area: np.ndarray       # px², box or polygon
    finite: np.ndarray     # a box or polygon whose four edges are finite


def _geometry_checks(a: pd.DataFrame, is_box: np.ndarray, is_poly: np.ndarray,
                     label_codes: np.ndarray, labels: pd.Index, objects: dict[str, Any]) -> _Geometry:
    """Extent, area, bounds, size, aspect and polygon validity; neutral values where they do not apply."""
    n = len(a)
    geometric = is_box | is_poly
    width = a["image_width"].to_numpy(dtype=float, na_value=np.nan)
    height = a["image_height"].to_numpy(dtype=float, na_value=np.nan)
    x0, y0 = a["x_min"].to_numpy(dtype=float, na_value=np.nan), a["y_min"].to_numpy(dtype=float, na_value=np.nan)
    x1, y1 = a["x_max"].to_numpy(dtype=float, na_value=np.nan), a["y_max"].to_numpy(dtype=float, na_value=np.nan)
    poly_rows = np.flatnonzero(is_poly)
    geoms = shapely.from_wkb(a["geometry_wkb"].to_numpy(dtype=object)[poly_rows], on_invalid="ignore") \
        if len(poly_rows) else np.array([], dtype=object)
    readable = ~shapely.is_missing(geoms)
    out: dict[str, np.ndarray] = {}

    nonfinite = ((~np.isfinite(x0)).astype(float) + ~np.isfinite(y0) + ~np.isfinite(x1) + ~np.isfinite(y1))
    nonfinite[poly_rows[~readable]] = 4.0  # no readable polygon at all
    out["n_nonfinite_coords"] = np.where(geometric, nonfinite, 0.0)
    finite = geometric & (nonfinite == 0)

    w, h = x1 - x0, y1 - y0
    out["min_signed_extent_px"] = np.where(finite, np.fmin(w, h), 0.0)
    area = np.clip(w, 0, None) * np.clip(h, 0, None)
    polygon_is_valid = np.ones(n, dtype=bool)  # True where there is no readable polygon to judge
    if len(poly_rows):
        polygon_is_valid[poly_rows[readable]] = shapely.is_valid(geoms[readable])
        area[poly_rows[readable]] = shapely.area(geoms[readable])
    out["polygon_is_valid"] = polygon_is_valid
    out["area_px"] = np.where(finite, area, np.inf)
    with np.errstate(invalid="ignore"):
        outside = np.fmax.reduce([-x0, -y0, x1 - width, y1 - height])
    out["outside_image_px"] = np.where(finite, outside, 0.0)

    min_size = {k: float(v.get("min_size_px", 0)) for k, v in objects.items()}
    max_aspect = {k: float(v.get("max_aspect_ratio", np.inf)) for k, v in objects.items()}
    short, long = np.fmin(np.abs(w), np.abs(h)), np.fmax(np.abs(w), np.abs(h))
    proper = finite & (w >= 0) & (h >= 0)
    out["min_side_px"] = np.where(proper, short, np.inf)
    out["min_size_px"] = np.nan_to_num(np.where(proper, _per_category(label_codes, labels, min_size), 0.0), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(short > 0, long / short, np.inf)
    positive = proper & (short > 0)
    out["aspect_ratio"] = np.where(positive, aspect, 0.0)
    out["max_aspect_ratio"] = np.nan_to_num(np.where(positive, _per_category(label_codes, labels, max_aspect), np.inf),
                                            nan=np.inf)
    return _Geometry(out, (x0, y0, x1, y1), area, finite)


def derive_check_columns(annotations: pd.DataFrame, tasks: pd.DataFrame, ontology: Any) -> pd.DataFrame:
    """The narrow frame the row suite validates, one row per annotation, same order.

    Only numbers, booleans and categoricals, and no nulls: where a rule does not apply to a
    row (geometry of a scene choice, area of a box whose corners are missing, size of an
    image whose task is unknown) the column holds a neutral value that passes the rule
    (0 for limits from above, +inf where more than 0 is required), so that row is judged
    only by the rule that does apply. Nulls would mean the same to Great Expectations, but it
    drops them by filtering the *whole* frame, twice per expectation: at 1M rows that made
    the suite 2.2x slower. ``first_source_row`` points at the row of the annotator's first
    answer to the task (for the duplicate message).
    """
    a = annotations.reset_index(drop=True)
    n = len(a)
    kind_codes, kinds = _codes(a["kind"])
    label_codes, labels = _codes(a["label"])
    kind_list = list(kinds)
    is_box = kind_codes == (kind_list.index("box") if "box" in kind_list else -2)
    is_poly = kind_codes == (kind_list.index("polygon") if "polygon" in kind_list else -2)
    is_choice = kind_codes == (kind_list.index("choice") if "choice" in kind_list else -2)
    # The geometry is judged on a second thread while this one works on the string keys:
    # both spend their time in numpy, Arrow and GEOS, which release the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-geometry") as pool:
        geometry = pool.submit(_geometry_checks, a, is_box, is_poly, label_codes, labels,
                               ontology_dict(ontology)["objects"])
        # Columns are gathered in a dict and framed once, without copying: assigning them one
        # by one to a DataFrame copied each (at 1M rows ~3 ms a column warm, far more on
        # memory this process has not touched yet).
        c: dict[str, Any] = {}
        c["n_missing_required"] = missing_required(a)[1].sum(axis=1, dtype=np.int64)
        c["kind"] = pd.Categorical.from_codes(kind_codes, categories=kinds) if len(kinds) else pd.Categorical([None] * n)
        both = (kind_codes >= 0) & (label_codes >= 0)
        pair_codes = np.where(both, kind_codes * max(len(labels), 1) + label_codes, -1)
        pair_names = [f"{k}:{lab}" for k in kinds for lab in labels]
        c["kind_label"] = pd.Categorical.from_codes(pair_codes, categories=pd.Index(pair_names).unique()) \
            if pair_names and len(set(pair_names)) == len(pair_names) else pd.Categorical([None] * n)

        # Task keys: factorized once, looked up in the handoff by code (a merge on two string
        # columns cost as much as all the geometry checks), and reused for the answer keys.
        task_key, handoff_row = _task_keys(a, tasks)
        c["task_known"] = handoff_row >= 0
        width = a["image_width"].to_numpy(dtype=float, na_value=np.nan)
        height = a["image_height"].to_numpy(dtype=float, na_value=np.nan)
        sent_width = np.append(tasks["image_width"].to_numpy(dtype=float, na_value=np.nan), np.nan)[handoff_row]
        sent_height = np.append(tasks["image_height"].to_numpy(dtype=float, na_value=np.nan), np.nan)[handoff_row]
        size_error = np.fmax(np.abs(width - sent_width), np.abs(height - sent_height))
        c["image_size_error_px"] = np.nan_to_num(size_error, nan=0.0)  # unknown task or size: judged elsewhere

        annotator_codes, annotators = _codes(a["annotator_id"])
        answer = pd.factorize(task_key * (len(annotators) + 1) + (annotator_codes + 1))[0]  # dense, first-seen order
        source = _codes(a["source_file"])[0]
        first_source_row = _first_row_of(answer)
        from_later_file = source != source[first_source_row]
        second_choice = np.zeros(n, dtype=bool)
        second_choice[is_choice] = pd.Series(answer[is_choice]).duplicated().to_numpy()
        c["is_duplicate_answer"] = from_later_file | second_choice
        c["first_source_row"] = first_source_row
        has_scene = np.zeros(int(answer.max()) + 1 if n else 0, dtype=bool)
        has_scene[answer[is_choice]] = True
        c["answer_has_scene"] = has_scene[answer]
        geometry = geometry.result()

    for name in ["n_nonfinite_coords", "min_signed_extent_px", "polygon_is_valid", "area_px", "outside_image_px",
                 "min_side_px", "min_size_px", "aspect_ratio", "max_aspect_ratio"]:
        c[name] = geometry.columns[name]
    finite = geometry.finite
    dup_obj = np.zeros(n, dtype=bool)
    if finite.any():
        n_sources, n_pairs = int(source.max()) + 2, int(pair_codes.max()) + 2
        owner = (answer[finite] * n_sources + (source[finite] + 1)) * n_pairs + (pair_codes[finite] + 1)
        dup_obj[finite] = _duplicate_rows(owner.astype(np.int64), *(edge[finite] for edge in geometry.edges),
                                          geometry.area[finite])
    c["is_duplicate_object"] = dup_obj
    c["lead_time_s"] = a["lead_time_s"].to_numpy(dtype=float, na_value=0.0)  # missing: judged as a required field
    return pd.DataFrame(c, index=pd.RangeIndex(n), copy=False)
