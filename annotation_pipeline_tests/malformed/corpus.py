"""Builders for vendor return files, valid and malformed, used by the intake and QA tests.

The malformed corpus is generated (not checked in) so that each case states next to its bytes
what is wrong with it and which reason it must end quarantined with; ``write_corpus`` writes it
into a real inbox folder.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.contracts import GOLD_LABELS, VENDOR_TASKS

VENDOR = "simvendor"
BATCH = "b-2026-11-01"
W, H = 320.0, 240.0
ANNOTATORS = ("ann-01", "ann-02", "ann-03")


def make_tasks(n_tasks: int = 6, gold_task_ids: tuple[str, ...] = ("5", "6"), overlap: int = 3,
               batch_id: str = BATCH, vendor: str = VENDOR) -> pd.DataFrame:
    ids = [str(i) for i in range(1, n_tasks + 1)]
    return VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": batch_id, "task_id": ids, "item_id": [f"item{i:0>4}" for i in ids],
        "is_gold": [i in gold_task_ids for i in ids], "vendor": vendor,
        "image_file": [f"t{int(i):05d}.png" for i in ids], "image_width": W, "image_height": H,
        "overlap": overlap, "ontology_version": "1.0.0", "guidelines_version": "1",
        "model_version": "m1"}))


def user(annotator: str, index: int = 1) -> dict:
    return {"id": index, "email": f"{annotator}@{VENDOR}.example"}


def choice(label: str, rid: str = "s") -> dict:
    return {"id": rid, "from_name": "scene", "to_name": "image", "type": "choices",
            "value": {"choices": [label]}}


def box(label: str, x: float, y: float, w: float, h: float, rid: str = "b", **extra) -> dict:
    """A rectangle given in pixels, written in Label Studio percent coordinates."""
    return {"id": rid, "from_name": "objects", "to_name": "image", "type": "rectanglelabels",
            "original_width": int(W), "original_height": int(H), "image_rotation": 0,
            "value": {"x": 100 * x / W, "y": 100 * y / H, "width": 100 * w / W,
                      "height": 100 * h / H, "rotation": 0, "rectanglelabels": [label], **extra}}


def polygon(label: str, points_px: list[tuple[float, float]], rid: str = "p") -> dict:
    return {"id": rid, "from_name": "outline", "to_name": "image", "type": "polygonlabels",
            "original_width": int(W), "original_height": int(H),
            "value": {"points": [[100 * x / W, 100 * y / H] for x, y in points_px],
                      "polygonlabels": [label]}}


def task(task_id: int, annotations: list[dict]) -> dict:
    return {"id": task_id, "data": {"image": f"images/t{task_id:05d}.png"}, "annotations": annotations}


def answer(annotator: str, results: list[dict], ann_id: int = 1, lead_time: float = 30.0) -> dict:
    return {"id": ann_id, "completed_by": user(annotator), "lead_time": lead_time,
            "created_at": "2026-11-01T10:00:00Z", "result": results}


# The truth of the six sample tasks: a scene, a car box and a sign outline each.
SCENES = {1: "day", 2: "night", 3: "fog", 4: "rain", 5: "day", 6: "night"}
CAR = (40.0, 50.0, 60.0, 30.0)                      # x, y, w, h in pixels
SIGN = [(200.0, 40.0), (240.0, 40.0), (240.0, 90.0), (200.0, 90.0)]


def good_results(task_id: int, shift: float = 0.0) -> list[dict]:
    x, y, w, h = CAR
    return [choice(SCENES[task_id]), box("car", x + shift, y, w, h),
            polygon("sign", [(px + shift, py) for px, py in SIGN])]


def valid_export(annotator: str, task_ids=(1, 2, 3, 4, 5, 6), shift: float = 0.0,
                 lead_time: float = 30.0) -> list[dict]:
    """One annotator's complete, correct answers: 3 rows per task."""
    return [task(t, [answer(annotator, good_results(t, shift), ann_id=t * 100, lead_time=lead_time)])
            for t in task_ids]


def gold_labels(task_ids=("5", "6")) -> pd.DataFrame:
    rows = []
    for t in task_ids:
        item = f"item{t:0>4}"
        x, y, w, h = CAR
        rows.append({"item_id": item, "kind": "choice", "label": SCENES[int(t)], "x_min": np.nan,
                     "y_min": np.nan, "x_max": np.nan, "y_max": np.nan, "geometry_wkb": None})
        rows.append({"item_id": item, "kind": "box", "label": "car", "x_min": x, "y_min": y,
                     "x_max": x + w, "y_max": y + h, "geometry_wkb": None})
        sign = shapely.Polygon(SIGN)
        rows.append({"item_id": item, "kind": "polygon", "label": "sign", "x_min": sign.bounds[0],
                     "y_min": sign.bounds[1], "x_max": sign.bounds[2], "y_max": sign.bounds[3],
                     "geometry_wkb": shapely.to_wkb(sign)})
    return GOLD_LABELS.conform(pd.DataFrame(rows))


def dumps(document) -> bytes:
    return json.dumps(document, indent=1).encode("utf-8")


@dataclass(frozen=True)
class Case:
    """A malformed return: the file, and what must happen to it."""
    name: str                       # file name inside the batch folder
    content: bytes
    stage: str                      # "intake" (file or row rejected on parsing) or "qa"
    reasons: dict[str, int]         # reason code -> rows quarantined with it
    valid_rows: int                 # rows of this file that must be accepted in the end
    what: str


def _bad_rows_export() -> list[dict]:
    """ann-04 answers every task; one result per task is broken in a different way."""
    x, y, w, h = CAR
    nan_box = box("car", x, y, w, h, rid="nan")
    nan_box["value"]["x"] = float("nan")
    broken = {
        1: box("car", x, y, -w, h, rid="swapped"),                    # negative width: swapped corners
        2: box("car", x, y, 0.0, h, rid="zero"),                      # zero area
        3: box("car", 300.0, y, 60.0, h, rid="out"),                  # 40 px past the right edge
        4: polygon("sign", [(200, 40), (240, 90), (240, 40), (200, 90)], rid="bowtie"),  # self-intersecting
        5: nan_box,                                                   # NaN coordinate
        6: box("truck", x, y, w, h, rid="unknown_label"),             # not in the ontology
    }
    return [task(t, [answer("ann-04", [choice(SCENES[t]), broken[t]], ann_id=t * 100)])
            for t in range(1, 7)]


def _partial_and_negative() -> list[dict]:
    """ann-05: task 1 has boxes but no scene choice; task 2 has a box at negative x."""
    return [task(1, [answer("ann-05", [box("car", *CAR)], ann_id=1)]),
            task(2, [answer("ann-05", [choice("night"), box("person", -30.0, 50.0, 20.0, 40.0)], ann_id=2)]),
            task(3, [answer("ann-05", [choice("fog")], ann_id=3)])]


def malformed_cases() -> list[Case]:
    good = dumps(valid_export("ann-06", task_ids=(1, 2)))
    unknown_task = [task(1, [answer("ann-07", good_results(1), ann_id=1)]),
                    task(99, [answer("ann-07", good_results(1), ann_id=2)])]
    return [
        Case("truncated.json", good[: len(good) // 2], "intake", {"truncated_json": 1}, 0,
             "upload cut off half-way"),
        Case("utf16.json", codecs.BOM_UTF16_LE + json.dumps(valid_export("ann-06", (1,))).encode("utf-16-le"),
             "intake", {"not_utf8": 1}, 0, "exported as UTF-16"),
        Case("latin1.json", json.dumps([{"id": 1, "data": {"image": "images/tö.png"}, "annotations": []}],
                                       ensure_ascii=False).encode("latin-1"),
             "intake", {"not_utf8": 1}, 0, "exported as Latin-1"),
        Case("not_an_export.json", dumps({"hello": "world"}), "intake", {"unknown_format": 1}, 0,
             "JSON, but neither Label Studio nor COCO"),
        Case("unknown_task.json", dumps(unknown_task), "intake", {"unknown_task": 3}, 3,
             "task 99 was never sent"),
        Case("bad_rows.json", dumps(_bad_rows_export()), "qa",
             {"swapped_coordinates": 1, "zero_area": 1, "outside_image": 1, "invalid_polygon": 1,
              "missing_coordinates": 1, "label_not_in_ontology": 1}, 6,
             "one broken result per task, scene choices fine"),
        Case("partial.json", dumps(_partial_and_negative()), "qa",
             {"missing_scene_choice": 1, "outside_image": 1}, 2,
             "an answer without its scene choice; a box at negative x"),
        Case("ann-01-resubmitted.json", dumps(valid_export("ann-01", task_ids=(1,), shift=2.0)), "qa",
             {"duplicate_answer": 3}, 0, "ann-01 answers task 1 again in a second file"),
    ]


def write_corpus(inbox: Path, batch_id: str = BATCH) -> tuple[list[Path], list[Case]]:
    """Valid files of ann-01..03, the malformed cases, a byte-identical resubmission and a
    name escaping the inbox; returns (files in intake order, cases)."""
    folder = inbox / batch_id
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for annotator in ANNOTATORS:
        path = folder / f"{annotator}.json"
        path.write_bytes(dumps(valid_export(annotator)))
        files.append(path)
    cases = malformed_cases()
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.content)
        files.append(path)
    (folder / "ann-02-copy.json").write_bytes((folder / "ann-02.json").read_bytes())
    files.append(folder / "ann-02-copy.json")
    outside = inbox.parent / "outside.json"
    outside.write_bytes(dumps(valid_export("ann-09")))
    files.append(folder / ".." / ".." / "outside.json")
    return files, cases


# ---------------------------------------------------------------- hostile mutations (issue 11)
#
# Classes of bad input, not examples: every hostile value is put at every place of a valid
# export where a vendor's tool (or an attacker) could put it. Task 1 (or COCO image 1) carries
# the mutation; task 2 stays intact, and its rows must be accepted whatever task 1 holds.

class Raw:
    """A JSON literal json.dumps cannot write (a 5,000-digit number, 10k-deep nesting)."""

    def __init__(self, literal: str):
        self.literal = literal


HOSTILE_VALUES: dict[str, object] = {
    "null": None, "true": True, "zero": 0, "negative": -1, "number_string": "12",
    "superscript_two": "²", "lone_surrogate": "\ud800", "empty_string": "", "long_string": "x" * 100_000,
    "list": [320], "object": {"id": 1}, "nan": float("nan"), "huge_float": 1e308,
    "big_int": Raw("9" * 5000), "big_exponent": Raw("1e99999"), "deep_10k": Raw("[" * 10_000 + "]" * 10_000),
    "nested_50": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
}


def hostile_dumps(document) -> bytes:
    """json.dumps with ``Raw`` values written as their literal."""
    raws: dict[str, str] = {}

    def default(value):
        if isinstance(value, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = value.literal
            return key
        raise TypeError(type(value).__name__)

    text = json.dumps(document, default=default)
    for key, literal in raws.items():
        text = text.replace(f'"{key}"', literal)
    return text.encode("utf-8")


def _ls_two_tasks() -> list[dict]:
    return valid_export("ann-08", task_ids=(1, 2))


def _ls_sites() -> dict[str, tuple]:
    """Label Studio: where to put a value in task 1 (a path of keys/indices from the export)."""
    a = (0, "annotations", 0)
    r = (*a, "result", 1)           # the car box
    p = (*a, "result", 2)           # the sign outline
    return {
        "task": (0,), "task.id": (0, "id"), "task.data": (0, "data"), "task.data.image": (0, "data", "image"),
        "task.annotations": (0, "annotations"), "annotation": a, "annotation.id": (*a, "id"),
        "completed_by": (*a, "completed_by"), "completed_by.email": (*a, "completed_by", "email"),
        "lead_time": (*a, "lead_time"), "was_cancelled": (*a, "was_cancelled"), "result": (*a, "result"),
        "result_entry": r, "result.id": (*r, "id"), "result.type": (*r, "type"), "result.value": (*r, "value"),
        "value.x": (*r, "value", "x"), "value.width": (*r, "value", "width"),
        "value.rectanglelabels": (*r, "value", "rectanglelabels"),
        "value.label": (*r, "value", "rectanglelabels", 0), "value.rotation": (*r, "value", "rotation"),
        "choice.label": (*a, "result", 0, "value", "choices", 0),
        "original_width": (*r, "original_width"), "original_height": (*r, "original_height"),
        "image_rotation": (*r, "image_rotation"), "value.points": (*p, "value", "points"),
        "value.points[0]": (*p, "value", "points", 0), "value.points[0][0]": (*p, "value", "points", 0, 0),
    }


def _coco_two_images() -> dict:
    """COCO: images 1 and 2 (tasks 1 and 2), each with its own categories, so a mutation of
    image 1's categories leaves image 2's rows alone."""
    x, y, w, h = CAR
    images = [{"id": i, "file_name": f"t{i:05d}.png", "width": W, "height": H} for i in (1, 2)]
    categories, annotations = [], []
    for i in (1, 2):
        base = 10 * i
        categories += [{"id": base + 1, "name": "car"}, {"id": base + 2, "name": "sign"},
                       {"id": base + 3, "name": SCENES[i]}]
        common = {"image_id": i, "annotator_id": "ann-08", "task_id": i, "lead_time": 20.0}
        annotations += [
            {"id": base + 1, "category_id": base + 1, "bbox": [x, y, w, h], **common},
            {"id": base + 2, "category_id": base + 2, "segmentation": [[c for pt in SIGN for c in pt]], **common},
            {"id": base + 3, "category_id": base + 3, **common}]
    return {"images": images, "categories": categories, "annotations": annotations}


def _coco_sites() -> dict[str, tuple]:
    return {
        "coco.image": ("images", 0), "coco.image.id": ("images", 0, "id"),
        "coco.image.file_name": ("images", 0, "file_name"), "coco.image.width": ("images", 0, "width"),
        "coco.category.id": ("categories", 0, "id"), "coco.category.name": ("categories", 0, "name"),
        "coco.annotation": ("annotations", 0), "coco.annotation.id": ("annotations", 0, "id"),
        "coco.image_id": ("annotations", 0, "image_id"), "coco.category_id": ("annotations", 0, "category_id"),
        "coco.bbox": ("annotations", 0, "bbox"), "coco.bbox[0]": ("annotations", 0, "bbox", 0),
        "coco.segmentation": ("annotations", 1, "segmentation"),
        "coco.segmentation[0]": ("annotations", 1, "segmentation", 0),
        "coco.annotator_id": ("annotations", 0, "annotator_id"), "coco.task_id": ("annotations", 0, "task_id"),
        "coco.lead_time": ("annotations", 0, "lead_time"),
    }


def _set(document, path: tuple, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@dataclass(frozen=True)
class Mutation:
    name: str            # file name: <site>~<value>.json
    content: bytes
    intact_rows: int     # rows of the untouched task/image that must be accepted


def field_mutations() -> list[Mutation]:
    """Every hostile value at every site of a Label Studio and a COCO export (>700 files)."""
    import copy

    mutations = []
    for sites, build, intact in ((_ls_sites(), _ls_two_tasks, 3), (_coco_sites(), _coco_two_images, 3)):
        pristine = build()
        for site, path in sites.items():
            for value_name, value in HOSTILE_VALUES.items():
                document = _set(copy.deepcopy(pristine), path, value)
                mutations.append(Mutation(f"{site}~{value_name}.json", hostile_dumps(document), intact))
    return mutations


def file_mutations() -> list[Case]:
    """Whole-file damage: each file is one record, quarantined with its reason."""
    good = dumps(valid_export("ann-06", task_ids=(1,)))
    text = good.decode()
    return [
        Case("utf16-bom.json", codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "intake", {"not_utf8": 1}, 0, "UTF-16"),
        Case("utf16-be-bom.json", codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "intake", {"not_utf8": 1}, 0,
             "UTF-16 big-endian"),
        Case("utf32-bom.json", codecs.BOM_UTF32_LE + text.encode("utf-32-le"), "intake", {"not_utf8": 1}, 0, "UTF-32"),
        Case("utf16-no-bom.json", text.encode("utf-16-le"), "intake", {"not_utf8": 1}, 0, "UTF-16 without a mark"),
        Case("utf32-no-bom.json", text.encode("utf-32-be"), "intake", {"not_utf8": 1}, 0, "UTF-32 without a mark"),
        Case("empty.json", b"", "intake", {"empty_file": 1}, 0, "zero bytes"),
        Case("blank.json", b" \n\t ", "intake", {"empty_file": 1}, 0, "whitespace only"),
        Case("cut.json", good[:-7], "intake", {"truncated_json": 1}, 0, "cut off"),
        Case("garbage-after.json", good + b"}{", "intake", {"invalid_json": 1}, 0, "trailing garbage"),
        Case("deep.json", b"[" * 10_000 + b"]" * 10_000, "intake", {"too_deep": 1}, 0, "10k-deep nesting"),
        Case("deep-object.json", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "intake", {"too_deep": 1}, 0,
             "10k-deep objects"),
        Case("big-int.json", b"9" * 5000, "intake", {"unknown_format": 1}, 0, "a 5,000-digit number alone"),
        Case("string.json", b'"\\ud800"', "intake", {"unknown_format": 1}, 0, "a lone surrogate alone"),
        Case("null.json", b"null", "intake", {"unknown_format": 1}, 0, "JSON null"),
        Case("object.json", b'{"images": 1, "annotations": 2}', "intake", {"unknown_format": 1}, 0, "COCO keys, no lists"),
        Case("nan.json", b"NaN", "intake", {"unknown_format": 1}, 0, "NaN alone"),
        Case("binary.json", bytes(range(256)) * 4, "intake", {"not_utf8": 1}, 0, "binary bytes"),
        Case("empty-list.json", b"[]", "intake", {}, 0, "an export of no tasks"),
    ]
