"""The data root as a DVC registry: `dvc get ROOT releases/vNNNN --rev dataset-vNNNN` restores a release."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import CONSENSUS_LABELS
from annotation_pipeline.release.registry import ensure_registry, record_release, recorded_versions, tag_for
from annotation_pipeline.release.store import DvcReleaseStore, merge_into_dataset


def _publish(store: DvcReleaseStore, n: int, date: str):
    labels = merge_into_dataset(None, CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n)], "kind": "box", "label": "car",
        "x_min": np.arange(n, dtype=float), "y_min": 1.0, "x_max": np.arange(n) + 10.0, "y_max": 11.0,
        "geometry_wkb": None, "confidence": 0.9, "n_annotators": 3, "n_assigned": 3, "method": "iou_cluster",
        "annotation_ids": [f"a{k}" for k in range(n)]})), date)
    prov = pd.DataFrame({"item_id": labels["item_id"], "annotation_id": "a"})
    return store.publish(labels, prov, {"dataset": {"labels": n}}, [date], {"ontology": "1.0.0"})


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_tagged_release_is_restored_byte_identical_with_dvc_get(tmp_path):
    root = tmp_path / "root"
    ensure_registry(root)
    (root / "raw").mkdir()
    (root / "raw" / "upload-of-jane.doe@example.com.png").write_bytes(b"personal")
    store = DvcReleaseStore(root, str(tmp_path / "remote"))
    first = _publish(store, 3, "2026-11-20")
    record_release(root, first.version)
    second = _publish(store, 5, "2026-11-21")
    commit = record_release(root, second.version)
    assert record_release(root, second.version) == commit  # recorded once
    assert recorded_versions(root) == ["v0001", "v0002"]
    tracked = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True).stdout.split()
    assert "raw/upload-of-jane.doe@example.com.png" not in tracked and "releases/v0001.dvc" in tracked

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dvc = [sys.executable, "-m", "dvc"]
    proc = subprocess.run([*dvc, "get", str(root), "releases/v0001", "--rev", tag_for("v0001"), "-o", "v0001"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _tree(elsewhere / "v0001") == _tree(root / "releases" / "v0001")
