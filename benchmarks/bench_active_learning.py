"""Active learning vs random sampling: labels needed to reach a target accuracy on the sample world.

Task: the pre-label detector's region classifier. Scenes come from the sample world's
``render_scene`` (320x240, its four scene conditions, noise and rain streaks); the pool is the
regions a detector would be asked about: every true object's box, jittered as a region proposer
would place it (shift up to 20 % of its size, scale 0.8-1.25), labeled car / person / bike / sign,
plus as many random windows of object size labeled background unless they cover an object at
IoU >= 0.5 (then that object's class). Features are grey-level HOG of the region with some
context, resized to 32x32: shape, not our synthetic palette (colour alone would separate the
classes after one label each, and a learning curve would say nothing).

Simulation (pool-based): every method starts from the same random seed set, then acquires
``--batch`` labels per round until ``--max-labels``; after each round the same classifier
(standardized features, multinomial logistic regression) is refit and scored on a held-out set
of regions from other scenes. Methods: ``active`` (margin uncertainty of the current model x
diversity within the batch, ``select_uncertain_diverse`` on a 32-d PCA of the features), ``uncertainty`` (the ablation: the most uncertain items, no diversity) and
``random``. Several seeds; curves are the mean over seeds.

Target accuracy: 95 % of the accuracy the same classifier reaches with the whole pool labeled,
i.e. most of what labeling everything would buy; the last 5 % is where the curves
are flattest, so the choice favours neither method (fixed before the first run; the run prints
the other shares too). Labels to target = where the mean curve first reaches it (interpolated within that round).
Batch: the daily queue is bought in large batches between retrainings, so the default batch (25,
about a fifth of what random needs to reach the target) is a batch, not one label at a time;
RESULTS.md has the sweep (with batches of 10 the most uncertain items alone do better). Goal: active learning needs <= 70 % of random's labels.

Run: python benchmarks/bench_active_learning.py [--json] [--plot PNG]
     (defaults: 400 pool scenes, 200 held-out scenes, 10 seeds, seed set 20, batch 25, up to 300 labels)
With --json the last line is one JSON object (labels_to_target_al, labels_to_target_random, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from annotation_pipeline.prelabel.active_learning import margin_uncertainty, select_uncertain_diverse
from annotation_pipeline.sample_world.sample_data import render_scene

CLASSES = ("background", "car", "person", "bike", "sign")
PATCH = 32
TARGET_SHARE = 0.95  # of the full-pool accuracy; see the module docstring
GOAL_RATIO = 0.70
SHARES_REPORTED = (0.95, 0.96, 0.97, 0.98, 0.99)
METHODS = ("active", "uncertainty", "random")  # "uncertainty": the ablation without diversity
PLOT_NAMES = {"active": "active (uncertainty x diversity)", "uncertainty": "uncertainty only", "random": "random"}


def _median(values: list[int | None], cap: int) -> str:
    """Median labels to target over seeds; a seed that never reached it counts as beyond the cap."""
    finite = np.array([v if v is not None else np.inf for v in values], dtype=float)
    med = float(np.median(finite))
    return f">{cap}" if np.isinf(med) else f"{med:g}"


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)


def _region_feature(grey: np.ndarray, box: np.ndarray) -> np.ndarray:
    from PIL import Image
    from skimage.feature import hog

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * 0.6 + 2  # a square with some context
    h, w = grey.shape
    x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
    x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
    patch = Image.fromarray(grey[y0:y1, x0:x1]).resize((PATCH, PATCH), Image.BILINEAR)
    return hog(np.asarray(patch, dtype=np.float32), orientations=9, pixels_per_cell=(8, 8),
               cells_per_block=(2, 2), feature_vector=True)


def region_dataset(n_scenes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, class index) for the jittered object boxes and random windows of n scenes."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for _ in range(n_scenes):
        image, truth = render_scene(rng, (320, 240))
        grey = np.asarray(image.convert("L"))
        boxes = np.array([b for _, b, _ in truth.objects], dtype=float).reshape(-1, 4)
        names = [c for c, _, _ in truth.objects]
        for (label, box, _) in truth.objects:
            w, h = box[2] - box[0], box[3] - box[1]
            scale = rng.uniform(0.8, 1.25)
            cx, cy = (box[0] + box[2]) / 2 + rng.uniform(-0.2, 0.2) * w, (box[1] + box[3]) / 2 + rng.uniform(-0.2, 0.2) * h
            jittered = np.array([cx - w * scale / 2, cy - h * scale / 2, cx + w * scale / 2, cy + h * scale / 2])
            feats.append(_region_feature(grey, jittered))
            labels.append(CLASSES.index(label))
        for _ in range(len(truth.objects)):
            w, h = rng.uniform(8, 60), rng.uniform(12, 40)
            x0, y0 = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            window = np.array([x0, y0, x0 + w, y0 + h])
            iou = _iou(window, boxes) if len(boxes) else np.zeros(0)
            hit = int(iou.argmax()) if len(iou) and iou.max() >= 0.5 else -1
            feats.append(_region_feature(grey, window))
            labels.append(CLASSES.index(names[hit]) if hit >= 0 else 0)
    return np.asarray(feats), np.asarray(labels)


def _fit(x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, C=1.0).fit(x, y)


def learning_curve(method: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                   embedding: np.ndarray, seed: int, seed_labels: int, batch: int, max_labels: int) -> list[float]:
    """Held-out accuracy after each round: seed set, then +batch labels a round up to max_labels."""
    rng = np.random.default_rng(seed)
    labeled = rng.choice(len(y), seed_labels, replace=False)
    accuracy = []
    while True:
        model = _fit(x[labeled], y[labeled]) if len(np.unique(y[labeled])) > 1 else None
        accuracy.append(model.score(x_test, y_test) if model else float(np.mean(y_test == y[labeled][0])))
        if len(labeled) >= max_labels:
            return accuracy
        pool = np.setdiff1d(np.arange(len(y)), labeled)
        batch = min(batch, max_labels - len(labeled), len(pool))
        if method == "random" or model is None:
            new = rng.choice(pool, min(batch, len(pool)), replace=False)
        elif method == "uncertainty":  # the ablation: the most uncertain items, no diversity
            doubt = margin_uncertainty(model.predict_proba(x[pool]))
            new = pool[np.argsort(-doubt, kind="stable")[:batch]]
        else:
            doubt = margin_uncertainty(model.predict_proba(x[pool]))
            # diversity within the batch only: keeping away from the labeled set as well (labeled_features)
            # explores regions the classifier is already sure of and cost labels here (RESULTS.md)
            picked = select_uncertain_diverse(doubt, embedding[pool], batch, seed=seed)
            new = pool[picked.index]
        labeled = np.concatenate([labeled, new])


def labels_to_target(labels: np.ndarray, curve: np.ndarray, target: float) -> int | None:
    """Labels at which the curve first reaches the target, interpolated linearly within the round
    that crossed it (rounds are coarse: a batch of 25 would otherwise be the resolution)."""
    reached = np.flatnonzero(curve >= target)
    if not len(reached):
        return None
    i = int(reached[0])
    if i == 0:
        return int(labels[0])
    share = (target - curve[i - 1]) / (curve[i] - curve[i - 1])
    return int(np.ceil(labels[i - 1] + share * (labels[i] - labels[i - 1])))


def _plot(path: Path, labels: np.ndarray, curves: dict[str, np.ndarray], target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, runs in curves.items():
        mean, sd = runs.mean(0), runs.std(0)
        ax.plot(labels, mean, label=PLOT_NAMES[name], marker=".")
        ax.fill_between(labels, mean - sd, mean + sd, alpha=0.2)
    ax.axhline(target, color="#555", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    ax.set_xlabel("labels bought"); ax.set_ylabel("held-out accuracy")
    ax.set_title("Region classifier on the sample world: active learning vs random")
    ax.legend(loc="lower right"); fig.tight_layout()
    fig.savefig(path, dpi=90); plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Active learning vs random sampling on the sample world.")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object with the results")
    parser.add_argument("--pool-scenes", type=int, default=400)
    parser.add_argument("--test-scenes", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed-labels", type=int, default=20)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--max-labels", type=int, default=300)
    parser.add_argument("--plot", type=Path, default=None, help="write the learning curves as a PNG")
    args = parser.parse_args(argv)
    if min(args.pool_scenes, args.test_scenes, args.seeds, args.seed_labels, args.batch) < 1 \
            or args.max_labels < args.seed_labels:
        parser.error("sizes must be >= 1 and --max-labels >= --seed-labels")
    return args


def main(argv: list[str] | None = None) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    args = parse_args(argv)
    started = time.perf_counter()
    x_pool, y_pool = region_dataset(args.pool_scenes, seed=1)
    x_test, y_test = region_dataset(args.test_scenes, seed=2)
    scaler = StandardScaler().fit(x_pool)  # unsupervised: uses no label
    x_pool, x_test = scaler.transform(x_pool), scaler.transform(x_test)
    embedding = PCA(n_components=min(32, x_pool.shape[1], len(x_pool)), random_state=0).fit_transform(x_pool)
    max_labels = min(args.max_labels, len(y_pool))
    with threadpool_limits(1):  # one BLAS thread: on 2 busy cores, more threads only contend
        full_accuracy = _fit(x_pool, y_pool).score(x_test, y_test)
        curves = {m: np.array([learning_curve(m, x_pool, y_pool, x_test, y_test, embedding, s, args.seed_labels,
                                              args.batch, max_labels) for s in range(args.seeds)])
                  for m in METHODS}
    target = TARGET_SHARE * full_accuracy
    labels = np.minimum(args.seed_labels + args.batch * np.arange(curves["active"].shape[1]), max_labels)
    al = labels_to_target(labels, curves["active"].mean(0), target)
    rnd = labels_to_target(labels, curves["random"].mean(0), target)
    unc = labels_to_target(labels, curves["uncertainty"].mean(0), target)
    per_seed = {m: [labels_to_target(labels, c, target) for c in runs] for m, runs in curves.items()}
    ratio = al / rnd if al is not None and rnd is not None else None
    print(f"pool {len(y_pool)} regions from {args.pool_scenes} scenes (class counts "
          f"{dict(zip(CLASSES, np.bincount(y_pool, minlength=len(CLASSES)).tolist(), strict=True))}), "
          f"held out {len(y_test)} from {args.test_scenes} scenes")
    print(f"full-pool accuracy {full_accuracy:.4f}; target {TARGET_SHARE:.0%} of it = {target:.4f}")
    print("mean held-out accuracy over seeds (sd)")
    print(f"{'labels':>7} " + " ".join(f"{m:>16}" for m in METHODS))
    for i, n in enumerate(labels):
        print(f"{n:>7} " + " ".join(f"{curves[m][:, i].mean():>8.4f} ({curves[m][:, i].std():.3f})" for m in METHODS))
    print(f"labels to target: active {al}, random {rnd}; ratio {ratio if ratio is None else round(ratio, 3)} "
          f"(goal <= {GOAL_RATIO}); uncertainty only {unc}; per seed active {per_seed['active']}, "
          f"random {per_seed['random']}, uncertainty only {per_seed['uncertainty']}")
    print("other targets (share of full-pool accuracy: labels active / uncertainty only / random)")
    for share in SHARES_REPORTED:
        level = share * full_accuracy
        mean = [labels_to_target(labels, curves[m].mean(0), level) for m in METHODS]
        med = [_median([labels_to_target(labels, c, level) for c in curves[m]], max_labels) for m in METHODS]
        print(f"  {share:.0%} = {level:.4f}: mean curve {' / '.join(map(str, mean))}; "
              f"median per seed {' / '.join(med)}")
    if args.plot:
        _plot(args.plot, labels, curves, target)
    result = {"labels_to_target_al": al, "labels_to_target_random": rnd,
              "ratio": None if ratio is None else round(ratio, 4), "goal_ratio": GOAL_RATIO,
              "met": bool(ratio is not None and ratio <= GOAL_RATIO),
              "target_accuracy": round(target, 4), "full_pool_accuracy": round(full_accuracy, 4),
              "labels_to_target_uncertainty_only": unc,
              "per_seed_al": per_seed["active"], "per_seed_random": per_seed["random"],
              "labels": labels.tolist(), "curve_al": np.round(curves["active"].mean(0), 4).tolist(),
              "curve_random": np.round(curves["random"].mean(0), 4).tolist(),
              "curve_uncertainty_only": np.round(curves["uncertainty"].mean(0), 4).tolist(),
              "pool": len(y_pool), "held_out": len(y_test), "seeds": args.seeds,
              "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
