"""What the Dagster UI shows of an asset: every column described, no metadata line cut off (issue #22)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.anonymization.reidentification import REIDENTIFICATION_MAP
from annotation_pipeline.contracts import ALL_CONTRACTS, CONSENSUS_LABELS, REVIEW_DECISIONS
from annotation_pipeline.defs.common import (
    UI_LINE_WIDTH,
    fit_markdown,
    table_metadata,
    ui_metadata,
)

DATE = "2026-11-19"


def _lines_too_long(value: dg.MetadataValue) -> list[str]:
    """Lines of a text or Markdown value the UI would cut; an embedded image is drawn, not printed."""
    text = value.text if isinstance(value, dg.TextMetadataValue) else value.md_str
    return [line for line in text.split("\n") if len(line) > UI_LINE_WIDTH and "](data:image/" not in line]


# ---- every column of every table says what it means


@pytest.mark.parametrize("contract", [*ALL_CONTRACTS, REIDENTIFICATION_MAP], ids=lambda c: c.name)
def test_every_column_of_a_table_schema_carries_its_contract_meaning_and_nullability(contract):
    schema = table_metadata(contract.empty(), contract)["dagster/column_schema"]
    assert [c.name for c in schema.columns] == contract.column_names
    for column in schema.columns:
        assert column.description and column.description == contract.columns[column.name].description
        assert column.constraints.nullable == contract.columns[column.name].nullable, column.name
        assert column.type == contract.columns[column.name].dtype


def test_a_frame_with_a_column_its_contract_does_not_know_is_refused_with_the_column_named():
    frame = CONSENSUS_LABELS.empty().assign(scratch=pd.Series(dtype="float64"))
    with pytest.raises(ValueError, match="consensus_labels: column\\(s\\) scratch are not in the contract"):
        table_metadata(frame, CONSENSUS_LABELS)


# ---- wide metadata fits the UI


def _wide_frame(n_rows: int = 4, n_cols: int = 18) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"measure_number_{k}": rng.random(n_rows) for k in range(n_cols)})
    return frame.assign(item_id=[f"item-{i:04d}" for i in range(n_rows)])[["item_id", *frame.columns]]


def test_a_wide_table_becomes_narrower_tables_that_each_repeat_the_first_column_and_lose_no_value():
    frame = _wide_frame()
    md = ui_metadata({"wide": dg.MetadataValue.md(frame.round(4).to_markdown(index=False))})["wide"].md_str
    assert max(map(len, frame.to_markdown(index=False).split("\n"))) > UI_LINE_WIDTH  # the input is wide
    assert max(map(len, md.split("\n"))) <= UI_LINE_WIDTH
    tables = md.split("\n\n")
    assert len(tables) >= 3
    headers = [[c.strip() for c in t.split("\n")[0].strip("|").split("|")] for t in tables]
    assert all(h[0] == "item_id" for h in headers)
    assert [c for h in headers for c in h[1:]] == list(frame.columns[1:])  # every column once, in order
    for t in tables:
        assert len(t.split("\n")) == 2 + len(frame)  # header, rule, one line per row


def test_a_table_with_a_cell_wider_than_a_line_becomes_a_wrapped_list_keeping_every_word():
    reason = " ".join(["the reviewer wrote a long reason"] * 12)
    frame = pd.DataFrame({"decision_id": ["d-1", "d-2"], "decision": ["override", "confirm"],
                          "reason": [reason, "short"]})
    md = fit_markdown(frame.to_markdown(index=False))
    assert max(map(len, md.split("\n"))) <= UI_LINE_WIDTH
    assert md.startswith("- **d-1**: decision override; reason the reviewer wrote")
    assert " ".join(md.split()).count("the reviewer wrote a long reason") == 12
    assert "- **d-2**: decision confirm; reason short" in md
    key_value = fit_markdown(pd.DataFrame({"what": ["note", "ece"], "value": [reason, "0.06"]})
                             .to_markdown(index=False))
    assert key_value.split("\n")[0].startswith("- **note**: the reviewer wrote") and "- **ece**: 0.06" in key_value


def test_prose_and_list_items_are_rewrapped_and_an_image_is_left_whole():
    image = "![chart](data:image/png;base64," + "A" * 500 + ")"
    paragraph = "Spread is the mean distance " * 12
    md = fit_markdown(f"{paragraph}\n\n- {paragraph}\n\n{image}")
    lines = md.split("\n")
    assert image in lines
    assert all(len(line) <= UI_LINE_WIDTH for line in lines if line != image)
    item = lines[lines.index("") + 1:]
    assert item[0].startswith("- Spread") and item[1].startswith("  ")  # continuation stays in the item


def test_text_is_wrapped_reversibly_paths_under_the_root_read_root_and_other_values_pass_untouched(tmp_path):
    root = tmp_path / "data-root-with-a-rather-long-name-as-on-a-server"
    line = (f"folder at {root}/vendors/simvendor/outbox: 21 tasks at {root}/vendors/simvendor/outbox/"
            "simvendor-2026-11-19-e3438902; " + "at most 15% of 25 candidates, rounded down " * 4)
    data_docs = dg.MetadataValue.path(f"{root}/qa/data_docs/{'x' * 200}.html")
    out = ui_metadata({"exchange": line, "rule": dg.MetadataValue.text(line), "data_docs": data_docs,
                       "figures": dg.MetadataValue.json({"note": line}), "tasks": 21}, root=root)
    for key in ("exchange", "rule"):
        text = out[key].text
        assert max(map(len, text.split("\n"))) <= UI_LINE_WIDTH
        assert text.replace("\n", " ") == line.replace(str(root), "ROOT")  # joined back, the same words
        assert "ROOT/vendors/simvendor/outbox: 21 tasks" in text.replace("\n", " ")
    sibling = f"{root}-old/vendors is another folder; {root} is the root"
    shown = ui_metadata({"s": sibling}, root=root)["s"].text.replace("\n", " ")
    assert shown == f"{root}-old/vendors is another folder; ROOT is the root"
    assert out["data_docs"] is data_docs and out["figures"].data == {"note": line} and out["tasks"] == 21


def test_a_preview_clips_long_cells_and_leaves_out_binary_geometry():
    frame = REVIEW_DECISIONS.empty()
    metadata = table_metadata(frame, REVIEW_DECISIONS)
    assert metadata["preview"].md_str == "(empty)"
    labels = CONSENSUS_LABELS.conform(pd.DataFrame([{
        "item_id": "i1", "kind": "polygon", "label": "car", "x_min": 1.0, "y_min": 2.0, "x_max": 30.0,
        "y_max": 40.0, "geometry_wkb": b"\x01\x03\x00", "confidence": 0.9, "n_annotators": 3, "n_assigned": 3,
        "method": "iou_cluster", "annotation_ids": " ".join(f"{k:016x}" for k in range(8))}]))
    preview = table_metadata(labels, CONSENSUS_LABELS)["preview"].md_str
    assert "geometry_wkb" not in preview and "\\x01" not in preview
    assert "0000000000000000 0000000000000001" in preview and "…" in preview
    assert max(map(len, preview.split("\n"))) <= UI_LINE_WIDTH


# ---- one real partition: what the UI shows after a run


@pytest.fixture(scope="module")
def lifecycle_metadata(tmp_path_factory):
    """Every materialization's and check's metadata of one small partition, run in process."""
    from annotation_pipeline.definitions import build_definitions
    from annotation_pipeline.sample_world.sample_data import generate_gold_set, generate_partition

    mp = pytest.MonkeyPatch()
    mp.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", "x" * 40)
    try:
        root = tmp_path_factory.mktemp("ui_metadata") / "root"
        generate_partition(root, DATE, 6)
        generate_gold_set(root, n_items=20)
        defs = build_definitions("local", root)
        instance = dg.DagsterInstance.ephemeral()
        assert defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance).success
        result = defs.resolve_job_def("annotation_lifecycle").execute_in_process(partition_key=DATE,
                                                                                 instance=instance)
    finally:
        mp.undo()
    assert result.success
    found = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
             for e in result.get_asset_materialization_events()}
    found.update({f"check {c.check_name}": c.metadata for c in result.get_asset_check_evaluations()})
    return found


@pytest.mark.slow
def test_after_a_run_every_materialized_table_schema_describes_every_column(lifecycle_metadata):
    schemas = {asset: m["dagster/column_schema"].schema for asset, m in lifecycle_metadata.items()
               if "dagster/column_schema" in m}
    assert len(schemas) >= 18  # every table asset of the lifecycle
    undescribed = {asset: [c.name for c in s.columns if not (c.description or "").strip()]
                   for asset, s in schemas.items()}
    assert not {a: cols for a, cols in undescribed.items() if cols}


@pytest.mark.slow
def test_after_a_run_no_text_or_markdown_metadata_line_is_wider_than_the_ui_shows(lifecycle_metadata):
    values = {(asset, key): v for asset, m in lifecycle_metadata.items() for key, v in m.items()
              if isinstance(v, (dg.TextMetadataValue, dg.MarkdownMetadataValue))}
    assert len(values) > 40
    too_long = {k: lines[0][:80] for k, v in values.items() if (lines := _lines_too_long(v))}
    assert not too_long


def test_every_table_asset_lists_its_described_columns_before_it_is_ever_materialized():
    from annotation_pipeline.definitions import build_definitions

    graph = build_definitions("local", "/tmp/annotation-pipeline-unused-root").resolve_asset_graph()
    not_tables = {"prelabel_model", "auto_accept_check", "dataset_release"}  # a model file, a check, a DVC release
    for key in graph.get_all_asset_keys():
        schema = graph.get(key).metadata.get("dagster/column_schema")
        if key.to_user_string() in not_tables:
            assert schema is None, key
            continue
        assert schema is not None, key
        columns = getattr(schema, "schema", schema).columns  # a TableSchema, or its metadata value
        assert columns and all(c.description for c in columns), key
