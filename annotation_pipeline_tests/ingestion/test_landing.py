"""Ingestion: every landing entry ends accepted, deduplicated or quarantined, and no original name leaks."""

from __future__ import annotations

import io
import os
import signal
import stat
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from PIL import Image

from annotation_pipeline.contracts import LANDING_ORIGINALS, QUARANTINE, RAW_ITEMS, item_id_for_bytes
from annotation_pipeline.defs.ingestion import raw_items
from annotation_pipeline.defs.resources import DataRoot, PartitionedParquetIOManager
from annotation_pipeline.ingestion.landing import ingest_landing_folder, read_landing_originals
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.ingestion.corpus import CASES, Case, png

DATE = "2026-11-21"
SECRET = b"ingestion-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def no_hang():
    """A FIFO opened without O_NONBLOCK blocks for ever: fail instead of hanging the suite."""
    def fail(signum, frame):
        raise TimeoutError("ingestion blocked (a FIFO was opened?)")
    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _landing(root: Path) -> Path:
    landing = DataLayout(root).landing(DATE)
    landing.mkdir(parents=True, exist_ok=True)
    return landing


def _build(case: Case, landing: Path, outside: Path) -> None:
    try:
        case.build(landing, outside)
    except PermissionError:
        pytest.skip(f"{case.name}: this user may not create such an entry")


def _ingest(root: Path):
    return ingest_landing_folder(DataLayout(root).landing(DATE), root, DATE, secret=SECRET)


def _assert_every_entry_accounted_for(result) -> None:
    counts = result.counts
    assert counts["received"] == counts["accepted"] + counts["duplicates"] + counts["quarantined"]
    originals = result.originals
    LANDING_ORIGINALS.validate(originals)
    RAW_ITEMS.validate(result.items)
    QUARANTINE.validate(result.quarantine)
    assert len(originals) == counts["received"]
    assert originals["outcome"].value_counts().to_dict() == {
        k: v for k, v in {"accepted": counts["accepted"], "duplicate": counts["duplicates"],
                          "quarantined": counts["quarantined"]}.items() if v}
    assert sorted(result.quarantine["source_file"]) == sorted(originals.loc[originals["outcome"] == "quarantined",
                                                                            "entry"])


def _outcome_of(result, original_name: str) -> str:
    originals = result.originals.set_index("source_file")
    shown = os.fsencode(original_name).decode("utf-8", "backslashreplace")
    row = originals.loc[shown]
    if row["outcome"] != "quarantined":
        return row["outcome"]
    return result.quarantine.set_index("source_file").loc[row["entry"], "reason"]


@pytest.mark.parametrize("case", CASES, ids=[c.name[:40].encode("ascii", "replace").decode() for c in CASES])
def test_each_odd_entry_ends_as_expected_and_the_rest_of_the_day_goes_on(tmp_path: Path, case: Case) -> None:
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    outside.mkdir()
    landing = _landing(root)
    good = png()
    (landing / "good_neighbour.png").write_bytes(good)
    _build(case, landing, outside)

    result = _ingest(root)

    _assert_every_entry_accounted_for(result)
    assert _outcome_of(result, case.name) == case.outcome
    assert item_id_for_bytes(good) in set(result.items["item_id"])  # one bad entry never stops the day
    if case.outcome not in ("accepted", "duplicate"):
        detail = result.quarantine.set_index("reason").loc[case.outcome, "detail"]
        assert len(str(detail)) > 20 and "Traceback" not in str(detail)


def test_a_folder_of_every_odd_entry_at_once_reconciles(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    outside.mkdir()
    landing = _landing(root)
    built = []
    for case in CASES:
        try:
            case.build(landing, outside)
            built.append(case)
        except PermissionError:
            continue
    result = _ingest(root)
    _assert_every_entry_accounted_for(result)
    for case in built:
        assert _outcome_of(result, case.name) == case.outcome, case.name
    # Nothing outside the landing folder was read: the linked image is not among the items.
    assert item_id_for_bytes((outside / "secret_elsewhere.png").read_bytes()) not in set(result.items["item_id"])


def test_original_names_stay_in_the_restricted_store(tmp_path: Path) -> None:
    root = tmp_path / "root"
    landing = _landing(root)
    (landing / "jane.doe@example.com portrait.png").write_bytes(png())
    (landing / "Zebulon Quaxley.txt").write_bytes(b"not an image")
    (landing / "Zebulon Quaxley copy.png").write_bytes((landing / "jane.doe@example.com portrait.png").read_bytes())
    result = _ingest(root)
    public = "".join([result.items.to_csv(), result.quarantine.to_csv(), result.duplicates.to_csv(),
                      repr(result)])
    for leak in ("jane", "doe", "example.com", "zebulon", "quaxley", "portrait"):
        assert leak not in public.lower()
    assert set(result.quarantine["source_file"].str[:8]) == {"landing_"}
    assert list(result.items["raw_path"]) == [f"raw/{DATE}/{result.items.loc[0, 'item_id']}.png"]

    layout = DataLayout(root)
    stored = read_landing_originals(layout, DATE)
    pd.testing.assert_frame_equal(stored, result.originals)
    assert set(stored["source_file"]) == {"jane.doe@example.com portrait.png", "Zebulon Quaxley.txt",
                                          "Zebulon Quaxley copy.png"}  # the auditor's way back
    path = layout.landing_originals(DATE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(layout.restricted.stat().st_mode) == 0o700
    raw_file = root / result.items.loc[0, "raw_path"]
    assert stat.S_IMODE(raw_file.stat().st_mode) == 0o600  # raw bytes still carry EXIF: owner only


def test_sidecar_metadata_travels_with_its_image_in_the_restricted_store(tmp_path: Path) -> None:
    root = tmp_path / "root"
    landing = _landing(root)
    (landing / "a.png").write_bytes(png())
    (landing / "a.png.json").write_text('{"notes": "call Jane", "operator": {"name": "Jane Doe"}}')
    result = _ingest(root)
    accepted = result.originals[result.originals["outcome"] == "accepted"].iloc[0]
    assert accepted["caption"] == "call Jane" and "Jane Doe" in accepted["metadata_json"]
    assert "metadata_json" not in result.items and "caption" not in result.items


def test_rerunning_ingestion_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    landing = _landing(root)
    (landing / "a.png").write_bytes(png())
    (landing / "b.png").write_bytes(png())
    first = _ingest(root)
    stored = {p: p.stat().st_mtime_ns for p in (root / "raw").rglob("*")}
    second = _ingest(root)
    pd.testing.assert_frame_equal(first.items, second.items)
    pd.testing.assert_frame_equal(first.originals, second.originals)
    assert {p: p.stat().st_mtime_ns for p in (root / "raw").rglob("*")} == stored


def test_a_missing_landing_folder_is_an_empty_partition(tmp_path: Path) -> None:
    result = ingest_landing_folder(tmp_path / "nope", tmp_path, DATE, secret=SECRET)
    assert result.counts == {"received": 0, "accepted": 0, "duplicates": 0, "quarantined": 0}


def test_a_decompression_bomb_is_quarantined_not_decoded(tmp_path: Path) -> None:
    big = io.BytesIO()
    Image.new("1", (9000, 9000)).save(big, format="PNG")  # 81 MP, a few KB on disk
    root = tmp_path / "root"
    (_landing(root) / "bomb.png").write_bytes(big.getvalue())
    result = _ingest(root)
    assert list(result.quarantine["reason"]) == ["decompression_bomb"]
    assert result.items.empty


def test_a_dagster_materialization_of_the_whole_corpus_reconciles(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", SECRET.decode())
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    outside.mkdir()
    landing = _landing(root)
    for case in CASES:
        try:
            case.build(landing, outside)
        except PermissionError:
            continue
    result = dg.materialize([raw_items], partition_key=DATE, resources={
        "data_root": DataRoot(path=str(root)), "io_manager": PartitionedParquetIOManager(base_path=str(root))})
    assert result.success
    metadata = result.asset_materializations_for_node("raw_items")[0].metadata
    received, accepted = metadata["received"].value, metadata["accepted"].value
    quarantined, duplicates = metadata["quarantined"].value, metadata["duplicates"].value
    assert received == accepted + quarantined + duplicates and metadata["reconciled"].value
    assert received == len(read_landing_originals(DataLayout(root), DATE))
    quarantine = pd.read_parquet(DataLayout(root).quarantine_file("ingestion", DATE))
    assert len(quarantine) == quarantined
    table = pd.read_parquet(DataLayout(root).table(["raw_items"], DATE))
    assert list(table.columns) == RAW_ITEMS.column_names and len(table) == accepted
    # The run's metadata (kept in Dagster's storage) names no uploaded file.
    shown = " ".join(str(v.value) for v in metadata.values())
    for case in CASES:
        name = case.name.split("/")[-1]
        assert "." not in name or name not in shown
