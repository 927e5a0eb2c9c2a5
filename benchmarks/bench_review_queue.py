"""Review queue on the demo: share of consensus candidates queued, and label accuracy against truth.

Reads a demo root (``annotation-pipeline demo --root ROOT``; run first when ROOT has no tables)
and re-runs the consensus stage on its returned annotations with the current code. The demo's
stored ``consensus_labels`` / ``review_queue`` are the baseline (what the code that ran the demo
made). Accuracy against the sample world's truth (``ROOT/sample_truth``): a released scene label
is right when it equals the true scene; a released object is right when a true object of the same
class in the same item overlaps it at IoU >= 0.5 (one-to-one). Object recall is reported too.
Run: python benchmarks/bench_review_queue.py [ROOT] (default /tmp/consensus_quality-demo)

Seeds mode: ``python benchmarks/bench_review_queue.py --seeds 0-19 [--images 49]`` generates one
day of the sample world per seed without Dagster (``annotation_pipeline.sample_world.crowd_day``) and runs, on the same
answers, the current code and the consensus stage as it was before issue 18 (``BASELINE``, taken
from git into a temporary folder and run in a subprocess), so one demo's luck is not the verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.layout import DataLayout

COORDS = ["x_min", "y_min", "x_max", "y_max"]
# main before the first consensus_quality merge (cef6693): the consensus stage issue 18 started from
BASELINE = "cef6693^1"
BASELINE_RUN = """
import sys
import pandas as pd
from annotation_pipeline.consensus.aggregators import run_consensus
folder = sys.argv[1]
result = run_consensus(*(pd.read_parquet(f"{folder}/{name}.parquet") for name in ("annotations", "tasks", "gold")))
result.labels.to_parquet(f"{folder}/baseline_labels.parquet")
result.review_queue.to_parquet(f"{folder}/baseline_queue.parquet")
"""


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


def _queue_counts(queue: pd.DataFrame) -> tuple[int, int, int, int]:
    """(queued, queue rows, dismissed, deferred); a queue without ``status`` queues every row."""
    if "status" not in queue.columns:
        return len(queue), len(queue), 0, 0
    status = queue["status"]
    return (int((status == "queued").sum()), len(queue), int((status == "dismissed").sum()),
            int((status == "deferred").sum()))


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
    work = Path(tempfile.mkdtemp(prefix="consensus-review-"))
    base_labels, base_queue = run_baseline(baseline_tree(work / "baseline"), work, annotations,
                                           tasks, gold)
    rows = [(f"baseline ({BASELINE})", base_labels, base_queue),
            ("demo as stored (code that ran it)", old_labels, old_queue),
            ("current code", result.labels, result.review_queue)]
    rows = [(name, labels, *_queue_counts(queue)) for name, labels, queue in rows]
    print(f"demo root {root}, partition {date}: {len(annotations)} returned annotations")
    print(f"{'run':<32}{'released':>9}{'queued':>8}{'dismissed':>10}{'deferred':>9}{'cand.':>7}"
          f"{'queued %':>9}{'label acc':>10}{'scene acc':>10}{'obj prec':>9}{'obj rec':>8}")
    for name, labels, queued, queue_rows, dismissed, deferred in rows:
        acc = released_accuracy(labels, truth)
        candidates = len(labels) + queue_rows
        print(f"{name:<32}{len(labels):>9}{queued:>8}{dismissed:>10}{deferred:>9}{candidates:>7}"
              f"{100 * queued / max(candidates, 1):>8.1f}%{acc['accuracy']:>10.4f}"
              f"{acc['scene_accuracy']:>10.4f}{acc['object_precision']:>9.4f}{acc['object_recall']:>8.4f}")
    new_status = result.review_queue["status"]
    print("dismissed by reason:", result.review_queue[new_status == "dismissed"]["reason"]
          .value_counts().to_dict(), " method:", result.method)
    print("counts:", result.counts)


def baseline_tree(work: Path) -> Path:
    """The ``annotation_pipeline`` package at ``BASELINE``, extracted from git into ``work``."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", BASELINE, "annotation_pipeline"],
                             check=True, capture_output=True).stdout
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    return work


def run_baseline(tree: Path, folder: Path, annotations, tasks, gold) -> tuple[pd.DataFrame, pd.DataFrame]:
    for name, frame in (("annotations", annotations), ("tasks", tasks), ("gold", gold)):
        frame.to_parquet(folder / f"{name}.parquet")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", BASELINE_RUN, str(folder)], check=True, env=env, cwd=tree)
    return (pd.read_parquet(folder / "baseline_labels.parquet"),
            pd.read_parquet(folder / "baseline_queue.parquet"))


def seeds_mode(seeds: list[int], n_images: int) -> None:
    """Current code vs ``BASELINE`` on generated days of the sample world, one row per seed."""
    from annotation_pipeline.sample_world.crowd_day import sample_world_day

    work = Path(tempfile.mkdtemp(prefix="consensus-review-"))
    tree = baseline_tree(work / "baseline")
    print(f"sample world, {n_images} images + gold per day, seeds {seeds[0]}-{seeds[-1]}; "
          f"baseline = consensus stage at {BASELINE}")
    print(f"{'seed':>4}{'base rel':>9}{'base right':>11}{'base acc':>9}{'rel':>6}{'right':>7}"
          f"{'acc':>8}{'queued':>7}{'cand':>6}{'queued %':>9}{'scene held':>11}")
    totals = np.zeros(6)
    for seed in seeds:
        annotations, tasks, gold, truth = sample_world_day(seed, n_images)
        folder = work / f"seed{seed}"
        folder.mkdir()
        base_labels, _ = run_baseline(tree, folder, annotations, tasks, gold)
        result = run_consensus(annotations, tasks, gold)
        base, ours = released_accuracy(base_labels, truth), released_accuracy(result.labels, truth)
        queued = int((result.review_queue["status"] == "queued").sum())
        candidates = len(result.labels) + len(result.review_queue)
        held = int((result.review_queue["kind"] == "choice").sum())
        totals += [base["released"], base["right"], ours["released"], ours["right"], queued, candidates]
        print(f"{seed:>4}{base['released']:>9}{base['right']:>11}{base['accuracy']:>9.4f}"
              f"{ours['released']:>6}{ours['right']:>7}{ours['accuracy']:>8.4f}{queued:>7}"
              f"{candidates:>6}{100 * queued / max(candidates, 1):>8.1f}%{held:>11}"
              f"{'   <' if ours['accuracy'] < base['accuracy'] else ''}")
    b_rel, b_right, o_rel, o_right, queued, candidates = totals
    print(f"pooled: baseline {b_right:.0f}/{b_rel:.0f} = {b_right / b_rel:.4f}; current "
          f"{o_right:.0f}/{o_rel:.0f} = {o_right / o_rel:.4f}; queued {queued:.0f}/{candidates:.0f} "
          f"= {100 * queued / candidates:.1f} %")


def parse_seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--seeds":
        images = int(sys.argv[sys.argv.index("--images") + 1]) if "--images" in sys.argv else 49
        seeds_mode(parse_seeds(sys.argv[2]), images)
    else:
        main()
