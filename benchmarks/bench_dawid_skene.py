"""Dawid-Skene on 1M answers: ours vs crowd-kit, same process, identical data.

Anchor: /work/shared/anchors/crowdkit_dawid_skene_1m.py (200k items × 5 answers, 100 annotators,
4 classes, 10 spammers; crowd-kit MajorityVote and DawidSkene(n_iter=100)). The data generator
below is the anchor's, seed for seed. Run: python benchmarks/bench_dawid_skene.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from annotation_pipeline.consensus.dawid_skene import DawidSkene  # noqa: E402
from annotation_pipeline.consensus.majority_vote import MajorityVote  # noqa: E402


def generate(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items, k, n_workers, n_classes = 200_000, 5, 100, 4
    truth = rng.integers(0, n_classes, n_items)
    acc = rng.uniform(0.55, 0.95, n_workers)
    acc[:10] = 0.25  # 10 spammers
    items = np.repeat(np.arange(n_items), k)
    workers = rng.integers(0, n_workers, n_items * k)
    correct = rng.random(n_items * k) < acc[workers]
    labels = np.where(correct, truth[items], rng.integers(0, n_classes, n_items * k))
    return items, workers, labels, truth


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    items, workers, labels, truth = generate()
    ck_frame = pd.DataFrame({"task": items, "worker": workers, "label": labels})
    our_frame = pd.DataFrame({"item_id": items, "annotator_id": workers, "label": labels})
    n_items = len(truth)

    def accuracy(series: pd.Series) -> float:
        return float((series.reindex(np.arange(n_items)).to_numpy() == truth).mean())

    t_ck_mv, ck_mv = timed(lambda: CrowdKitMajorityVote().fit_predict(ck_frame), 2)
    t_ck_ds, ck_ds = timed(lambda: CrowdKitDawidSkene(n_iter=100).fit(ck_frame), 2)
    t_mv, mv = timed(lambda: MajorityVote().fit(our_frame), 2)
    t_ds, ds = timed(lambda: DawidSkene(n_iter=100).fit(our_frame), 2)
    # ties: crowd-kit MV breaks them by its own order; accuracy below is what each reports
    rows = [
        ("crowd-kit MajorityVote", t_ck_mv, accuracy(ck_mv), "-"),
        ("ours MajorityVote", t_mv, accuracy(mv.labels_), "-"),
        ("crowd-kit DawidSkene(n_iter=100)", t_ck_ds, accuracy(ck_ds.labels_),
         len(ck_ds.loss_history_)),
        ("ours DawidSkene(n_iter=100)", t_ds, accuracy(ds.labels_), ds.n_iter_),
    ]
    print(f"1M answers ({len(items):,}), 200k items x 5, 100 annotators (10 spammers), 4 classes")
    print(f"{'method':<36}{'time s':>9}{'accuracy':>10}{'EM iters':>10}")
    for name, seconds, acc, iters in rows:
        print(f"{name:<36}{seconds:>9.3f}{acc:>10.4f}{iters!s:>10}")
    print(f"speed-up DS: {t_ck_ds / t_ds:.1f}x   accuracy DS ours - crowd-kit: "
          f"{accuracy(ds.labels_) - accuracy(ck_ds.labels_):+.4f}")
    print(f"speed-up MV: {t_ck_mv / t_mv:.1f}x")
    print("(every figure: best of 2 runs, wall clock, from the frame to fitted labels)")


if __name__ == "__main__":
    main()
