"""Review queue on the demo: share of consensus candidates queued, and label accuracy against truth.

Reads a demo root (``annotation-pipeline demo --root ROOT``; run first when ROOT has no tables)
and re-runs the consensus stage on its returned annotations with the current code. The demo's
stored ``consensus_labels`` / ``review_queue`` are the baseline (what the code that ran the demo
made). Accuracy against the sample world's truth (``ROOT/sample_truth``): a released scene label
is right when it equals the true scene; a released object is right when a true object of the same
class in the same item overlaps it at IoU >= 0.5 (one-to-one). Object recall is reported too.
Run: python benchmarks/bench_review_queue.py [ROOT] (default /tmp/consensus_quality-demo)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.layout import DataLayout

COORDS = ["x_min", "y_min", "x_max", "y_max"]


def released_accuracy(labels: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    scene = labels[labels["kind"] == "choice"]
    true_scene = truth[truth["kind"] == "choice"].set_index("item_id")["label"]
    scene_right = (scene["label"].to_numpy() == true_scene.reindex(scene["item_id"]).to_numpy())
    objects = labels[labels["kind"] != "choice"].reset_index(drop=True)
    true_objects = truth[truth["kind"] != "choice"].reset_index(drop=True)
    pairs = objects.reset_index().merge(true_objects.reset_index(), on=["item_id", "label"],
                                        suffixes=("", "_t"))
    a = pairs[COORDS].to_numpy(float)
    b = pairs[[c + "_t" for c in COORDS]].to_numpy(float)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    pairs = pairs.assign(iou=inter / np.maximum(union, 1e-9))
    pairs = pairs[pairs["iou"] >= 0.5].sort_values("iou", ascending=False)
    matched = pairs.drop_duplicates("index").drop_duplicates("index_t")
    n_right = int(scene_right.sum()) + len(matched)
    n_released = len(scene) + len(objects)
    return {"released": n_released, "right": n_right, "accuracy": n_right / max(n_released, 1),
            "scene_accuracy": float(scene_right.mean()) if len(scene) else float("nan"),
            "object_precision": len(matched) / max(len(objects), 1),
            "object_recall": len(matched) / max(len(true_objects), 1)}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/consensus_quality-demo")
    layout = DataLayout(root)
    tables = root / "tables"
    if not (tables / "returned_annotations").exists():
        subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root)],
                       check=True)
    date = max(p.stem for p in (tables / "returned_annotations").glob("*.parquet"))
    annotations = pd.read_parquet(tables / "returned_annotations" / f"{date}.parquet")
    tasks = pd.read_parquet(tables / "vendor_batches" / f"{date}.parquet")
    gold = pd.read_parquet(layout.gold_labels)
    truth = pd.concat([pd.read_parquet(p) for p in layout.sample_truth.glob("*.parquet")])
    old_labels = pd.read_parquet(tables / "consensus_labels" / f"{date}.parquet")
    old_queue = pd.read_parquet(tables / "review_queue" / f"{date}.parquet")
    result = run_consensus(annotations, tasks, gold)
    new_status = result.review_queue["status"]
    rows = [("demo as stored (baseline code)", old_labels, len(old_queue), len(old_queue), 0, 0),
            ("current code", result.labels, int((new_status == "queued").sum()),
             len(result.review_queue), int((new_status == "dismissed").sum()),
             int((new_status == "deferred").sum()))]
    print(f"demo root {root}, partition {date}: {len(annotations)} returned annotations")
    print(f"{'run':<32}{'released':>9}{'queued':>8}{'dismissed':>10}{'deferred':>9}{'cand.':>7}"
          f"{'queued %':>9}{'label acc':>10}{'scene acc':>10}{'obj prec':>9}{'obj rec':>8}")
    for name, labels, queued, queue_rows, dismissed, deferred in rows:
        acc = released_accuracy(labels, truth)
        candidates = len(labels) + queue_rows
        print(f"{name:<32}{len(labels):>9}{queued:>8}{dismissed:>10}{deferred:>9}{candidates:>7}"
              f"{100 * queued / max(candidates, 1):>8.1f}%{acc['accuracy']:>10.4f}"
              f"{acc['scene_accuracy']:>10.4f}{acc['object_precision']:>9.4f}{acc['object_recall']:>8.4f}")
    print("dismissed by reason:", result.review_queue[new_status == "dismissed"]["reason"]
          .value_counts().to_dict(), " method:", result.method)
    print("counts:", result.counts)


if __name__ == "__main__":
    main()
