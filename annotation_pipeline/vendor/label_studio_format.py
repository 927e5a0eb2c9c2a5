"""Label Studio result items, both ways: built from our rows, and parsed from an export.

Built (``label_studio_results``): the one place that turns a label row (choice, box or
polygon in pixels) into a Label Studio ``result`` item in percent coordinates, for many rows at once; the handoff's
predictions, the simulated workforce's exports and the release's Label Studio export all use it.

Parsed (``parse_label_studio``): Label Studio JSON export -> rows (``export_format.PARSED_COLUMNS``).

One received record is one ``result`` entry of an annotation. An annotation with no results,
and a malformed task or annotation entry, count as one record of their own, so they cannot
vanish. Anything unexpected inside one task (a wrong type, a value no check foresaw) becomes a
quarantined record of that task; the other tasks of the file go on.

Coordinates stay in Label Studio percentages here; ``vendor.intake`` scales them to pixels
and turns a result-level ``image_rotation`` back into the unrotated frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.vendor.export_format import (
    KIND_BY_LABEL_STUDIO_TYPE,
    PARSED_COLUMNS,
    image_name,
    number,
    preview,
    record,
    reference,
    size_problem,
    task_id_text,
    text_problem,
)
from annotation_pipeline.vendor.label_studio_columns import Irregular, parse_plain_tasks

IMAGE_NAME = "image"  # the <Image> tag of every labeling config we generate (label_studio.label_config)
RESULT_TYPE_BY_KIND = {"choice": "choices", "box": "rectanglelabels", "polygon": "polygonlabels"}


def result_from_name(ontology: Any, kind: str, label: str) -> str:
    """The control (``from_name``) of the labeling config that carries this kind of label."""
    raw = ontology.raw
    return raw["scene"]["from_name"] if kind == "choice" else raw["objects"][label]["from_name"]


def polygon_percent_points(wkb: bytes, width: float, height: float) -> list[list[float]]:
    """Polygon exterior as Label Studio percent points (closing point dropped)."""
    coords = shapely.get_coordinates(shapely.get_exterior_ring(shapely.from_wkb(wkb)))[:-1]
    return (coords / np.array([width, height]) * 100).round(4).tolist()


def label_studio_results(rows: pd.DataFrame, width: float | np.ndarray, height: float | np.ndarray,
                         ontology: Any, *, ids: list[str] | None = None,
                         scores: list[float] | None = None) -> list[dict[str, Any]]:
    """Label rows as Label Studio result items, in percent of the image as sent (never rotated).

    ``rows`` has ``kind`` (choice, box, polygon), ``label``, and for boxes ``x_min, y_min, x_max,
    y_max`` in pixels, for polygons ``geometry_wkb``. ``width``/``height``: the image size, one
    for all rows or one per row. ``ids`` and ``scores`` (one per row) are added when given.
    Percentages are computed for all rows at once; only the JSON objects are built per row.
    """
    n = len(rows)
    width = np.broadcast_to(np.asarray(width, dtype=float), (n,))
    height = np.broadcast_to(np.asarray(height, dtype=float), (n,))
    kinds, labels = rows["kind"].to_numpy(object), rows["label"].to_numpy(object)
    boxes = rows.reindex(columns=["x_min", "y_min", "x_max", "y_max"]).to_numpy(float)
    with np.errstate(invalid="ignore"):
        x, y = 100 * boxes[:, 0] / width, 100 * boxes[:, 1] / height
        w, h = 100 * (boxes[:, 2] - boxes[:, 0]) / width, 100 * (boxes[:, 3] - boxes[:, 1]) / height
    wkb = rows["geometry_wkb"].to_numpy(object) if "geometry_wkb" in rows else np.full(n, None)
    results = []
    for k in range(n):
        kind, label = kinds[k], labels[k]
        rtype = RESULT_TYPE_BY_KIND[kind]
        item: dict[str, Any] = {"id": ids[k]} if ids is not None else {}
        item.update(from_name=result_from_name(ontology, kind, label), to_name=IMAGE_NAME, type=rtype)
        if kind == "choice":
            item["value"] = {"choices": [label]}
        else:
            item.update(original_width=int(width[k]), original_height=int(height[k]), image_rotation=0)
            if kind == "box":
                item["value"] = {"x": float(x[k]), "y": float(y[k]), "width": float(w[k]), "height": float(h[k]),
                                 "rotation": 0, rtype: [label]}
            else:
                item["value"] = {"points": polygon_percent_points(wkb[k], float(width[k]), float(height[k])),
                                 rtype: [label]}
        if scores is not None:
            item["score"] = scores[k]
        results.append(item)
    return results


# Label Studio's editor turns images in quarter turns; the degrees are clockwise.
QUARTER_TURNS = (0.0, 90.0, 180.0, 270.0)


def parse_label_studio(tasks: list) -> pd.DataFrame:
    """Parsed rows of an export: plain tasks column by column, the others one by one here.

    ``label_studio_columns`` reads every task whose answer is plain at once and hands back
    the rest; a file it cannot type is read here whole. Rows keep the file's order.
    """
    try:
        plain = parse_plain_tasks(tasks)
    except Irregular:
        return parse_carefully(tasks, range(len(tasks))).drop(columns="task_index")
    if not len(plain.careful_tasks):
        return plain.rows.drop(columns="task_index")
    careful = parse_carefully(tasks, plain.careful_tasks)
    rows = pd.concat([plain.rows, careful], ignore_index=True).sort_values("task_index", kind="stable")
    return rows.drop(columns="task_index").reset_index(drop=True)


def parse_carefully(tasks: list, indices) -> pd.DataFrame:
    """Parsed rows of the tasks at ``indices``, each judged on its own, with a ``task_index`` column."""
    records: list[tuple] = []
    owners: list[int] = []
    for ti in indices:
        where = f"[{ti}]"
        try:
            mine = _task_records(tasks[ti], where)
        except Exception as exc:  # noqa: BLE001 - one odd task must not cost the file
            mine = [record(where, problem="malformed_task",
                           problem_detail=f"task {where} could not be read "
                                          f"({type(exc).__name__}: {preview(str(exc))})")]
        records.extend(mine)
        owners.extend([int(ti)] * len(mine))
    rows = pd.DataFrame.from_records(records, columns=PARSED_COLUMNS)
    rows["task_index"] = np.asarray(owners, dtype=np.int64)
    return rows


def _task_records(task: Any, where: str) -> list[tuple]:
    if not isinstance(task, dict):
        return [record(where, problem="malformed_task",
                       problem_detail=f"task {where} is {preview(task)}, expected an object")]
    task_id = task_id_text(task.get("id"))
    if task_id is None:
        return [record(where, problem="invalid_task_id",
                       problem_detail=f"task {where} has id {preview(task.get('id'))}, "
                                      "expected an integer written with ASCII digits")]
    annotations = task.get("annotations")
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list):
        return [record(f"task={task_id} {where}", task_id, problem="malformed_task",
                       problem_detail=f"'annotations' must be a list, got {preview(annotations)}")]
    image = image_name(task.get("data"))
    records: list[tuple] = []
    for ai, ann in enumerate(annotations):
        records.extend(_annotation_records(ann, task_id, image, f"{where}.annotations[{ai}]", ai))
    return records


def annotator_from_completed_by(completed_by: Any) -> tuple[str | None, str]:
    """Our convention: e-mail local part when given, else ``user-<id>``; and a problem, if any."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and "@" in email and email.split("@", 1)[0]:
            local = email.split("@", 1)[0]
            problem = text_problem(local)
            return (None, f"completed_by.email {problem}") if problem else (local, "")
        completed_by = completed_by.get("id")
    if isinstance(completed_by, bool):
        return None, ""
    if isinstance(completed_by, int) or (isinstance(completed_by, str) and completed_by):
        text = f"user-{completed_by}"
        problem = text_problem(text)
        return (None, f"completed_by {problem}") if problem else (text, "")
    return None, ""


def _annotation_records(ann: Any, task_id: str, image: str | None, awhere: str, ai: int) -> list[tuple]:
    if not isinstance(ann, dict):
        return [record(f"task={task_id} {awhere}", task_id, problem="malformed_annotation",
                       problem_detail=f"annotation {awhere} is {preview(ann)}, expected an object")]
    ann_ref = reference(ann.get("id"), ai)
    annotator, annotator_problem = annotator_from_completed_by(ann.get("completed_by"))
    base = dict(task_id=task_id, ann_ref=ann_ref, annotator_id=annotator,
                lead_time_s=number(ann.get("lead_time")), image_name=image)
    results = ann.get("result")
    cancelled = bool(ann.get("was_cancelled"))
    if not isinstance(results, list) or not results:
        return [record(f"task={task_id} annotation={ann_ref} {awhere}", **base,
                       problem="cancelled_annotation" if cancelled else "empty_annotation",
                       problem_detail=("the annotator skipped/cancelled the task" if cancelled else
                                       "annotation has no results (partial submission)"))]
    records = []
    for ri, res in enumerate(results):
        rwhere = f"{awhere}.result[{ri}]"
        if not isinstance(res, dict):
            records.append(record(f"task={task_id} annotation={ann_ref} {rwhere}", **base,
                                  result_ref=str(ri), problem="malformed_result",
                                  problem_detail=f"result entry is {preview(res)}, expected an object"))
            continue
        result_ref = reference(res.get("id"), ri)
        ref = f"task={task_id} annotation={ann_ref} result={result_ref} {rwhere}"
        if annotator_problem:
            records.append(record(ref, **base, result_ref=result_ref, problem="invalid_annotator",
                                  problem_detail=annotator_problem))
        elif cancelled:
            records.append(record(ref, **base, result_ref=result_ref, problem="cancelled_annotation",
                                  problem_detail="result of an annotation marked was_cancelled"))
        else:
            records.append(_result_record(res, ref, dict(base, result_ref=result_ref)))
    return records


def _result_record(res: dict, ref: str, base: dict) -> tuple:
    rtype = res.get("type")
    kind = KIND_BY_LABEL_STUDIO_TYPE.get(rtype) if isinstance(rtype, str) else None
    value = res.get("value") if isinstance(res.get("value"), dict) else None
    common = dict(base, kind=kind, percent=True, ref_width=number(res.get("original_width")),
                  ref_height=number(res.get("original_height")))
    if kind is None:
        return record(ref, **common, problem="unsupported_result_type",
                      problem_detail=f"result type {preview(rtype)}; expected one of "
                                     f"{sorted(KIND_BY_LABEL_STUDIO_TYPE)}")
    if value is None:
        return record(ref, **common, problem="malformed_result", problem_detail="result has no 'value' object")
    size = (size_problem(res.get("original_width"), "original_width")
            or size_problem(res.get("original_height"), "original_height"))
    if size:
        return record(ref, **common, problem="malformed_size", problem_detail=size)
    rotation, rotation_problem = _image_rotation(res.get("image_rotation"))
    if rotation_problem:
        return record(ref, **common, problem="unsupported_image_rotation", problem_detail=rotation_problem)
    common["rotation"] = rotation
    label, label_problem = _single_label(value, rtype)
    if label_problem:
        return record(ref, **common, problem="malformed_label", problem_detail=label_problem)
    if kind == "choice":
        return record(ref, **common, label=label)
    if kind == "box":
        box_rotation = value.get("rotation") or 0
        if box_rotation not in (0, 0.0):
            return record(ref, **common, label=label, problem="rotated_box",
                          problem_detail=f"box rotated by {preview(box_rotation)} degrees; "
                                         "only axis-aligned boxes are in the ontology")
        return record(ref, **common, label=label, x=number(value.get("x")), y=number(value.get("y")),
                      w=number(value.get("width")), h=number(value.get("height")))
    points, problem, detail = points_array(value.get("points"))
    return record(ref, **common, label=label, points=points, problem=problem, problem_detail=detail)


def _image_rotation(value: Any) -> tuple[float, str]:
    """A result-level image rotation as one of QUARTER_TURNS, or why it cannot be undone."""
    if value is None:
        return 0.0, ""
    degrees = number(value)
    if degrees is None or not math.isfinite(degrees) or (degrees % 360.0) not in QUARTER_TURNS:
        return 0.0, (f"image_rotation {preview(value)}: only quarter turns (0, 90, 180, 270) can be "
                     "turned back into the image's own frame; ask for the answer on the unrotated image")
    return degrees % 360.0, ""


def _single_label(value: dict, key: str) -> tuple[str | None, str]:
    labels = value.get(key)
    if isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str) and labels[0]:
        problem = text_problem(labels[0])
        return (None, f"the label {problem}") if problem else (labels[0], "")
    if isinstance(labels, list) and len(labels) > 1:
        return None, f"{len(labels)} labels given in value.{key}, expected exactly one"
    return None, f"value.{key} must be a list with one label, got {preview(labels)}"


def points_array(points: Any) -> tuple[np.ndarray | None, str, str]:
    """Polygon points as an (n, 2) float array, or the problem with them."""
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        return None, "malformed_points", f"polygon points must be [[x, y], ...], got {preview(points)}"
    if len(points) < 3:
        return None, "too_few_points", f"polygon has {len(points)} point(s), at least 3 are needed"
    coords = [number(c) for p in points for c in p]
    if any(c is None for c in coords):
        return None, "malformed_points", "polygon points must be [[x, y], ...] numbers, got a null"
    return np.asarray(coords, dtype=float).reshape(-1, 2), "", ""
