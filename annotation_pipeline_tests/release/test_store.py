import json
import stat

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.contracts import CONSENSUS_LABELS
from annotation_pipeline.release.store import DvcReleaseStore, labels_fingerprint, merge_into_dataset


def _labels(n=3, label="car", date="2026-11-21"):
    df = CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n)], "kind": "box", "label": label,
        "x_min": np.arange(n, dtype=float), "y_min": 1.0, "x_max": np.arange(n) + 10.0, "y_max": 11.0,
        "geometry_wkb": None, "confidence": 0.9, "n_annotators": 3, "n_assigned": 3, "method": "iou_cluster",
        "annotation_ids": [f"a{k} b{k} c{k}" for k in range(n)],
    }))
    return merge_into_dataset(None, df, date)


def _publish(store, labels):
    prov = pd.DataFrame({"item_id": labels["item_id"], "annotation_id": "a"})
    return store.publish(labels, prov, {"dataset": {"labels": len(labels)}}, ["2026-11-21"], {"ontology": "1.0.0"})


@pytest.fixture
def store(tmp_path):
    return DvcReleaseStore(tmp_path / "root", str(tmp_path / "remote"))


def test_a_release_is_written_whole_dvc_tracked_and_pushed(store, tmp_path):
    info = _publish(store, _labels())
    folder = store.releases_dir / info.version
    assert info.version == "v0001" and info.created
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.parquet", "manifest.json", "provenance.parquet", "quality_report.json", "quality_report.md"]
    assert (store.releases_dir / "v0001.dvc").read_text().count(info.dvc_md5) == 1
    pushed = [p for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    assert len(pushed) >= 6  # five files and the directory listing
    assert store.verify("v0001") == []
    # read-only on disk (checked by mode bits: as root, os.access would say writable anyway)
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o444}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert (store.root / "audit" / "audit.jsonl").read_text().count("release_published") == 1


def test_publishing_identical_content_reuses_the_release(store):
    first = _publish(store, _labels())
    again = _publish(store, _labels().sample(frac=1, random_state=1))  # row order does not matter
    assert again.version == first.version and not again.created
    assert len(store.list_releases()) == 1
    changed = _publish(store, _labels(label="bike"))
    assert changed.version == "v0002" and changed.parent == "v0001"


def test_what_a_crash_leaves_behind_is_never_a_release_and_a_rerun_finishes_cleanly(store):
    # A crash while staging, and one after the rename but before registration, leave these:
    staging = store.releases_dir / ".staging-v0001"
    staging.mkdir(parents=True)
    (staging / "labels.parquet").write_bytes(b"half a parquet file")
    renamed = store.releases_dir / "v0001"
    renamed.mkdir()
    (renamed / "labels.parquet").write_bytes(b"not registered")
    assert store.list_releases() == [] and store.latest() is None  # consumers see no release
    info = _publish(store, _labels())
    assert info.version == "v0001" and info.created
    assert store.verify("v0001") == []
    assert not staging.exists()
    assert [r.version for r in store.list_releases()] == ["v0001"]


def test_tampering_with_a_released_file_is_detected(store):
    info = _publish(store, _labels())
    path = store.releases_dir / info.version / "quality_report.json"
    path.chmod(0o644)
    path.write_text(json.dumps({"tampered": True}))
    assert store.verify(info.version) == [
        "release v0001: quality_report.json changed since release (sha256 differs from the manifest)"]


def test_rereleasing_a_partition_replaces_its_rows_instead_of_appending():
    first = _labels(2, date="2026-11-20")
    both = merge_into_dataset(first, _labels(3, label="car").drop(columns="partition_date"), "2026-11-21")
    rerun = merge_into_dataset(both, _labels(3, label="car").drop(columns="partition_date"), "2026-11-21")
    assert len(both) == 5 and labels_fingerprint(both) == labels_fingerprint(rerun)
