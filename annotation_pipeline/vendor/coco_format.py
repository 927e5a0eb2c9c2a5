"""COCO JSON -> parsed rows (``export_format.PARSED_COLUMNS``).

One received record is one entry of ``annotations``. Images are matched to our tasks by file
name in ``vendor.intake`` (COCO has no task id, unless the vendor kept our ``task_id``
attribute). Ids are used as dictionary keys only when they are integers or short strings: an
image id ``[1]`` is unhashable, and ``true`` would collide with ``1``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from annotation_pipeline.vendor.export_format import (
    PARSED_COLUMNS,
    WHOLE_FILE,
    FileRejected,
    number,
    preview,
    record,
    reference,
    safe_text,
    size_problem,
    task_id_text,
    text_problem,
)
from annotation_pipeline.vendor.label_studio_format import points_array


def _key(value: Any) -> int | str | None:
    """An id usable as a dictionary key, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and not text_problem(value)):
        return value
    return None


def parse_coco(document: dict) -> pd.DataFrame:
    images, annotations = document.get("images"), document.get("annotations")
    categories = document.get("categories") or []
    if not isinstance(images, list) or not isinstance(annotations, list) or not isinstance(categories, list):
        raise FileRejected("unknown_format", "COCO 'images', 'annotations' and 'categories' must be lists")
    image_by_id = {_key(im.get("id")): im for im in images if isinstance(im, dict)}
    image_by_id.pop(None, None)
    category_by_id = {_key(c.get("id")): c.get("name") for c in categories if isinstance(c, dict)}
    category_by_id.pop(None, None)
    records: list[tuple] = []
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        try:
            records.append(_annotation_record(ann, where, i, image_by_id, category_by_id))
        except Exception as exc:  # noqa: BLE001 - one odd entry must not cost the file
            records.append(record(where, problem="malformed_annotation",
                                  problem_detail=f"{where} could not be read "
                                                 f"({type(exc).__name__}: {preview(str(exc))})"))
    return pd.DataFrame.from_records(records, columns=PARSED_COLUMNS)


def _annotation_record(ann: Any, where: str, i: int, image_by_id: dict, category_by_id: dict) -> tuple:
    if not isinstance(ann, dict):
        return record(where, problem="malformed_annotation", problem_detail=f"{where} is {preview(ann)}, "
                                                                            "expected an object")
    result_ref = reference(ann.get("id"), i)
    ref = f"annotation={result_ref} {where}"
    image = image_by_id.get(_key(ann.get("image_id")))
    label = category_by_id.get(_key(ann.get("category_id")))
    annotator = ann.get("annotator_id")
    annotator_text = WHOLE_FILE if annotator is None else (
        str(annotator) if isinstance(annotator, (int, str)) and not isinstance(annotator, bool) else None)
    file_name = image.get("file_name") if image else None
    # one COCO entry is one object; an annotator's answer to a task is all their entries
    common = dict(task_id=task_id_text(ann.get("task_id")), ann_ref="coco", result_ref=result_ref,
                  annotator_id=annotator_text, lead_time_s=number(ann.get("lead_time")),
                  image_name=safe_text(file_name) if isinstance(file_name, str) else None,
                  ref_width=number(image.get("width")) if image else None,
                  ref_height=number(image.get("height")) if image else None)
    if image is None:
        return record(ref, **common, problem="unknown_image",
                      problem_detail=f"image_id {preview(ann.get('image_id'))} is not in 'images'")
    if label is None:
        return record(ref, **common, problem="unknown_category",
                      problem_detail=f"category_id {preview(ann.get('category_id'))} is not in 'categories'")
    text = (text_problem(label) if isinstance(label, str) else "is not a string") or (
        text_problem(annotator_text) if isinstance(annotator_text, str) else "annotator_id is not an id")
    if text:
        return record(ref, **dict(common, label=None, annotator_id=None), problem="malformed_label",
                      problem_detail=f"category name or annotator_id {text}")
    common["label"] = label
    size = size_problem(image.get("width"), "image width") or size_problem(image.get("height"), "image height")
    if size:
        return record(ref, **common, problem="malformed_size", problem_detail=size)
    return _geometry_record(ann, ref, common)


def _geometry_record(ann: dict, ref: str, common: dict) -> tuple:
    segmentation, bbox = ann.get("segmentation"), ann.get("bbox")
    if isinstance(segmentation, list) and segmentation:
        if len(segmentation) > 1:
            return record(ref, **common, kind="polygon", problem="multi_part_polygon",
                          problem_detail=f"segmentation has {len(segmentation)} parts; "
                                         "the ontology expects one polygon per object")
        flat = segmentation[0]
        pairs = ([flat[k:k + 2] for k in range(0, len(flat), 2)]
                 if isinstance(flat, list) and len(flat) % 2 == 0 else flat)
        points, problem, detail = points_array(pairs)
        return record(ref, **common, kind="polygon", points=points, problem=problem, problem_detail=detail)
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, w, h = (number(v) for v in bbox)
        return record(ref, **common, kind="box", x=x, y=y, w=w, h=h)
    if bbox in (None, []) and not segmentation:
        # an image-level category without geometry is the scene answer
        return record(ref, **common, kind="choice")
    return record(ref, **common, problem="malformed_bbox",
                  problem_detail=f"bbox must be [x, y, width, height], got {preview(bbox)}")
