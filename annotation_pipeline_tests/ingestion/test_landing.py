import io

import pandas as pd
from PIL import Image

from annotation_pipeline.contracts import QUARANTINE, RAW_ITEMS, item_id_for_bytes
from annotation_pipeline.ingestion.landing import ingest_landing_folder


def _png(color=(10, 20, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _landing(tmp_path, files: dict[str, bytes]):
    landing = tmp_path / "landing" / "2026-11-21"
    landing.mkdir(parents=True)
    for name, content in files.items():
        (landing / name).write_bytes(content)
    return landing


def test_every_landing_file_is_accepted_deduplicated_or_quarantined_with_a_reason(tmp_path):
    good = _png()
    gif = io.BytesIO(); Image.new("RGB", (8, 8)).save(gif, format="GIF")
    landing = _landing(tmp_path, {
        "a.png": good, "copy_of_a.png": good, "b.png": _png((200, 0, 0)),
        "empty.jpg": b"", "truncated.png": _png(size=(300, 200))[:200], "notes.txt": b"hello",
        "anim.gif": gif.getvalue(),
    })
    result = ingest_landing_folder(landing, tmp_path, "2026-11-21")
    RAW_ITEMS.validate(result.items)
    QUARANTINE.validate(result.quarantine)
    assert result.counts == {"received": 7, "accepted": 2, "duplicates": 1, "quarantined": 4}
    assert result.counts["received"] == sum(v for k, v in result.counts.items() if k != "received")
    reasons = dict(zip(result.quarantine["source_file"], result.quarantine["reason"]))
    assert reasons == {"empty.jpg": "empty_file", "truncated.png": "corrupt_image",
                       "notes.txt": "not_an_image", "anim.gif": "unsupported_format"}
    assert all(result.quarantine["detail"].str.len() > 10)
    assert set(result.items["item_id"]) == {item_id_for_bytes(good), item_id_for_bytes(_png((200, 0, 0)))}
    assert result.duplicates.iloc[0].to_dict() == {"source_file": "copy_of_a.png", "item_id": item_id_for_bytes(good),
                                                  "duplicate_of": "a.png"}


def test_a_decompression_bomb_is_quarantined_not_decoded(tmp_path):
    big = io.BytesIO()
    Image.new("1", (9000, 9000)).save(big, format="PNG")  # 81 MP, a few KB on disk
    result = ingest_landing_folder(_landing(tmp_path, {"bomb.png": big.getvalue()}), tmp_path, "2026-11-21")
    assert list(result.quarantine["reason"]) == ["decompression_bomb"]
    assert result.items.empty


def test_sidecar_metadata_travels_with_its_image_and_bad_sidecars_quarantine_the_item(tmp_path):
    landing = _landing(tmp_path, {"a.png": _png(), "b.png": _png((1, 2, 3))})
    (landing / "a.png.json").write_text('{"notes": "call Jane", "operator": {"name": "Jane Doe"}}')
    (landing / "b.png.json").write_bytes(b"\xff\xfe not utf-8")
    result = ingest_landing_folder(landing, tmp_path, "2026-11-21")
    assert result.items["caption"].tolist() == ["call Jane"]
    assert "Jane Doe" in result.items["metadata_json"].iloc[0]
    assert result.quarantine["reason"].tolist() == ["undecodable_metadata"]


def test_rerunning_ingestion_changes_nothing(tmp_path):
    landing = _landing(tmp_path, {"a.png": _png(), "b.png": _png((5, 5, 5))})
    first = ingest_landing_folder(landing, tmp_path, "2026-11-21")
    stored = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").rglob("*")}
    second = ingest_landing_folder(landing, tmp_path, "2026-11-21")
    pd.testing.assert_frame_equal(first.items, second.items)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").rglob("*")} == stored


def test_a_missing_landing_folder_is_an_empty_partition(tmp_path):
    result = ingest_landing_folder(tmp_path / "nope", tmp_path, "2026-11-21")
    assert result.counts == {"received": 0, "accepted": 0, "duplicates": 0, "quarantined": 0}
