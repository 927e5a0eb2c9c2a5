"""The columnar Label Studio parser gives the rows the careful one gives, and reads plain exports itself.

``label_studio_columns`` takes the plain tasks of a file at once and hands every other task
(or the whole file) to the careful parser. The oracle is the careful parser alone: for every
Label Studio document of the malformed corpus and its >300 hostile mutations, both ways end
in the same accepted and quarantined rows after ``finalize_rows``.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.vendor.answer_rows import finalize_rows
from annotation_pipeline.vendor.export_format import FileRejected, decode_json
from annotation_pipeline.vendor.label_studio_columns import Irregular, parse_plain_tasks
from annotation_pipeline.vendor.label_studio_format import parse_carefully, parse_label_studio
from annotation_pipeline_tests.malformed.corpus import (
    BATCH,
    VENDOR,
    answer,
    box,
    choice,
    dumps,
    field_mutations,
    make_tasks,
    malformed_cases,
    polygon,
    task,
    valid_export,
)

TASKS = make_tasks()


def _label_studio_documents() -> list[tuple[str, list]]:
    files = [(m.name, m.content) for m in field_mutations()] + [(c.name, c.content) for c in malformed_cases()]
    documents = []
    for name, raw in files:
        try:
            document = decode_json(raw)
        except FileRejected:
            continue
        if isinstance(document, list):
            documents.append((name, document))
    return documents


def _finalized(parsed: pd.DataFrame, name: str):
    return finalize_rows(parsed, source_file=name, sha256="5e" * 32, batch_id=BATCH, vendor=VENDOR, tasks=TASKS,
                         partition_date="2026-11-01", stage="intake")


def _assert_same_rows(document: list, name: str) -> None:
    fast = _finalized(parse_label_studio(document), name)
    careful = _finalized(parse_carefully(document, range(len(document))).drop(columns="task_index"), name)
    pd.testing.assert_frame_equal(fast.accepted, careful.accepted)
    pd.testing.assert_frame_equal(fast.quarantined, careful.quarantined)
    assert (fast.file_reason, fast.file_detail) == (careful.file_reason, careful.file_detail)


def test_a_sample_of_the_corpus_ends_in_the_same_rows_both_ways():
    """Every mutated place, every hostile value and every malformed case at least once."""
    documents = dict(_label_studio_documents())
    sites = sorted({name.split("~")[0] for name in documents if "~" in name})
    values = sorted({name.split("~")[1] for name in documents if "~" in name})
    sample = {n for n in documents if "~" not in n}
    for i, site in enumerate(sites):  # one value per place, a different one from place to place
        mine = sorted(n for n in documents if n.startswith(f"{site}~"))
        sample.add(mine[(i * 7) % len(mine)])
    sample |= {next(n for n in documents if n.endswith(f"~{value}")) for value in values}
    for name in sorted(sample):
        _assert_same_rows(documents[name], name)


@pytest.mark.slow
def test_every_label_studio_document_of_the_corpus_ends_in_the_same_rows_both_ways():
    documents = _label_studio_documents()
    assert len(documents) > 300
    for name, document in documents:
        _assert_same_rows(document, name)


def _plain_variants() -> dict[str, list]:
    """Shapes real exports take that are all plain: each must be read column by column."""
    base = valid_export("ann-01", task_ids=(1, 2, 3))
    by_user_id = copy.deepcopy(base)
    for t in by_user_id:
        t["annotations"][0]["completed_by"] = 7           # older exports: the user's id only
    no_email = copy.deepcopy(base)
    for t in no_email:
        t["annotations"][0]["completed_by"] = {"id": 3}
    turned = copy.deepcopy(base)
    for t, degrees in zip(turned, (90, 180, -90)):       # -90 is a quarter turn too (270)
        for result in t["annotations"][0]["result"][1:]:
            result["image_rotation"] = degrees
    integers = [task(1, [answer("ann-02", [choice("day"), box("car", 32, 24, 64, 48)], ann_id=5)])]
    integers[0]["annotations"][0]["result"][1]["value"].update(x=10, y=10, width=20, height=20)
    no_sizes = copy.deepcopy(base)
    for t in no_sizes:
        for result in t["annotations"][0]["result"]:
            result.pop("original_width", None)
            result.pop("original_height", None)
    text_ids = copy.deepcopy(base)
    for t in text_ids:
        t["annotations"][0]["id"] = f"ann-{t['id']}"
    no_annotations = [*copy.deepcopy(base), {"id": 4, "data": {"image": "images/t00004.png"}, "annotations": []}]
    two_annotators = [task(1, [answer("ann-01", [choice("day")], ann_id=1), answer("ann-02", [choice("fog")], ann_id=2)])]
    polygons_only = [task(2, [answer("ann-03", [polygon("sign", [(10, 10), (50, 10), (50, 40)])], ann_id=9)])]
    return {"valid": base, "completed_by_id": by_user_id, "no_email": no_email, "quarter_turns": turned,
            "integer_coordinates": integers, "no_original_size": no_sizes, "text_annotation_ids": text_ids,
            "task_without_annotations": no_annotations, "two_annotators_one_task": two_annotators,
            "polygons_only": polygons_only}


@pytest.mark.parametrize("name", list(_plain_variants()))
def test_plain_exports_are_read_column_by_column_and_agree_with_the_careful_parser(name):
    document = decode_json(dumps(_plain_variants()[name]))
    plain = parse_plain_tasks(document)
    assert len(plain.careful_tasks) == 0
    assert len(plain.rows) == sum(len(a["result"]) for t in document for a in t.get("annotations") or [])
    _assert_same_rows(document, name)


def test_a_task_that_is_not_plain_goes_to_the_careful_parser_and_the_others_stay_columnar():
    document = valid_export("ann-01", task_ids=(1, 2, 3, 4))
    document[1]["annotations"][0]["result"][1]["value"]["rotation"] = 30      # a rotated box
    document[2]["annotations"][0]["was_cancelled"] = True
    document = decode_json(dumps(document))
    plain = parse_plain_tasks(document)
    assert plain.careful_tasks.tolist() == [1, 2]
    parsed = parse_label_studio(document)
    assert parsed["record_ref"].str.extract(r"\[(\d+)\]\.annotations")[0].astype(int).is_monotonic_increasing
    assert set(parsed["problem"]) == {"", "rotated_box", "cancelled_annotation"}
    _assert_same_rows(document, "mixed")


def test_a_boolean_among_float_coordinates_is_not_read_as_one():
    """Arrow would read ``true`` among doubles as 1.0; the file goes to the careful parser."""
    document = valid_export("ann-01", task_ids=(1, 2))
    document[0]["annotations"][0]["result"][1]["value"]["x"] = True
    document = decode_json(dumps(document))
    with pytest.raises(Irregular):
        parse_plain_tasks(document)
    parsed = parse_label_studio(document)
    assert np.isnan(parsed.loc[parsed["record_ref"].str.contains(r"^task=1 .*result\[1\]$"), "x"].astype(float)).all()
    _assert_same_rows(document, "boolean")
