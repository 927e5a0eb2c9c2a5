"""Box merging on ~300k boxes: ours vs ensemble-boxes' weighted_boxes_fusion, same process.

Anchor: /work/shared/anchors/wbf_boxes_300k.py (WBF image by image, 5 annotators, 3 objects per
image, N(0, 0.01) jitter in normalized coordinates, iou_thr=0.5). Same generator here, plus what
real annotators do: each honest annotator misses an object with probability 0.1, and annotator 4
is a spammer drawing 3 random boxes with random classes per image. Both methods get exactly the
same boxes. WBF's per-image input lists are built *before* its timer starts (this only helps WBF).
Quality: greedy one-to-one matching of outputs to ground truth per image and class at IoU >= 0.5;
object F1 and mean IoU of the matched pairs. WBF has no quorum, so it is reported as is and with
its confidence >= 0.6 (= 3 of 5 annotators, our default majority quorum).

Then every noise mix in ``MIXES`` (the anchor's five plus pixel-coordinate ones: small 3-20 px
objects, crowded same-class grids, 3 / 5 / 9 annotators, jitter 0.5-6.4 px or proportional to
size, extra boxes, spammers): ours vs WBF as it comes and vs WBF cut to the same quorum, same
boxes, same run (see ``quality_by_mix``). Then ``merge-boxes`` as a whole process vs a WBF script.
Run: python benchmarks/bench_box_merging.py            (everything, ~6 min here)
     python benchmarks/bench_box_merging.py --mixes    (only the table of mixes, ~2-3 min)
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ensemble_boxes import weighted_boxes_fusion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from annotation_pipeline.consensus.box_reliability import merge_boxes_reliability_weighted  # noqa: E402

N_IMG, N_ANN, N_OBJ, N_CLASSES = 22_000, 5, 3, 4
P_MISS, SPAMMER = 0.1, 4


@dataclass(frozen=True)
class Mix:
    """One generated noise mix. ``image=None``: the anchor's normalized coordinates (jitter and
    sizes in image fractions); else pixel coordinates on a W x H image (jitter and sizes in px;
    WBF gets them divided by W and H, which leaves every IoU unchanged)."""

    name: str
    n_img: int = 3_000
    n_ann: int = 5
    n_obj: int = 3
    n_spammers: int = 1
    jitter: float = 0.01           # sd of each corner's noise (absolute: annotators' pointing)
    rel_jitter: float = 0.0        # plus a sd proportional to the object's width / height
    p_miss: float = 0.1            # per honest annotator and object
    p_extra: float = 0.0           # per honest annotator and image: one box on nothing
    size: tuple[float, float] = (0.05, 0.3)
    image: tuple[int, int] | None = None
    crowded: bool = False          # objects on a tight grid: same-class neighbours overlap
    n_classes: int = N_CLASSES


SMALL = dict(image=(640, 480), size=(3.0, 20.0), n_obj=8, n_img=1_000)
CROWD = dict(image=(640, 480), crowded=True, n_obj=12, n_classes=1, n_img=600)
MIXES = [  # quality is compared with WBF on every one (ours must be >= on each)
    Mix("anchor + 1 spammer, miss 0.1"),
    Mix("2 spammers", n_spammers=2),
    Mix("heavy jitter 0.03", jitter=0.03),
    Mix("many misses 0.3", p_miss=0.3),
    Mix("2 spammers, jitter 0.02, miss 0.2", n_spammers=2, jitter=0.02, p_miss=0.2),
    Mix("small 3-20 px, jitter 0.5 px", jitter=0.5, **SMALL),
    Mix("small 3-20 px, jitter 1 px", jitter=1.0, **SMALL),
    Mix("small 3-20 px, jitter 2 px, extra 0.2", jitter=2.0, p_extra=0.2, **SMALL),
    Mix("small 3-20 px, jitter 6.4 px (0.01 of 640)", jitter=6.4, **SMALL),
    Mix("small, 3 annotators, no spammer, 1 px", jitter=1.0, n_ann=3, n_spammers=0,
        p_extra=0.1, **SMALL),
    Mix("small, 9 annotators, 2 spammers, 1 px", jitter=1.0, n_ann=9, n_spammers=2,
        **{**SMALL, "n_img": 500}),
    Mix("crowded 20-60 px, jitter 1.5 px", jitter=1.5, size=(20.0, 60.0), **CROWD),
    Mix("crowded 8-20 px, jitter 1 px", jitter=1.0, size=(8.0, 20.0), **CROWD),
    Mix("crowded 20-60 px, 9 annotators, 3 px", jitter=3.0, size=(20.0, 60.0), n_ann=9,
        n_spammers=2, **{**CROWD, "n_img": 300}),
    Mix("crowded 20-60 px, 3 annotators, 2 px", jitter=2.0, size=(20.0, 60.0), n_ann=3,
        n_spammers=0, p_extra=0.2, **CROWD),
    Mix("sizes 4-200 px, jitter 1.5 px, extra 0.3", jitter=1.5, size=(4.0, 200.0),
        p_extra=0.3, image=(640, 480), n_obj=5, n_img=1_500),
    Mix("sizes 8-300 px, jitter 5 % of size", jitter=0.0, rel_jitter=0.05, size=(8.0, 300.0),
        image=(640, 480), n_obj=5, n_img=1_500),
    Mix("crowded 8-60 px, jitter 6 % of size", jitter=0.0, rel_jitter=0.06, size=(8.0, 60.0),
        **CROWD),
    Mix("3 annotators, 1 spammer, 30-150 px, 3 px", jitter=3.0, size=(30.0, 150.0), n_ann=3,
        image=(640, 480), n_img=3_000),
]
N_IMG_QUALITY = 3_000


def generate(seed: int = 0, n_img: int = N_IMG, n_spammers: int = 1, jitter: float = 0.01,
             p_miss: float = P_MISS):
    """The anchor's boxes plus misses and spammers (the last ``n_spammers`` annotators)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0.05, 0.6, (n_img, N_OBJ, 2))
    size = rng.uniform(0.05, 0.3, (n_img, N_OBJ, 2))
    gt = np.concatenate([corner, corner + size], -1)
    gt_labels = rng.integers(0, N_CLASSES, (n_img, N_OBJ))
    boxes = np.clip(gt[:, None] + rng.normal(0, jitter, (n_img, N_ANN, N_OBJ, 4)), 0, 1)
    labels = np.broadcast_to(gt_labels[:, None], (n_img, N_ANN, N_OBJ)).copy()
    drawn = rng.random((n_img, N_ANN, N_OBJ)) >= p_miss
    for spammer in range(N_ANN - n_spammers, N_ANN):
        spam_corner = rng.uniform(0, 0.7, (n_img, N_OBJ, 2))
        spam_size = rng.uniform(0.05, 0.3, (n_img, N_OBJ, 2))
        boxes[:, spammer] = np.concatenate([spam_corner, spam_corner + spam_size], -1)
        labels[:, spammer] = rng.integers(0, N_CLASSES, (n_img, N_OBJ))
        drawn[:, spammer] = True
    image, annotator, _ = np.meshgrid(np.arange(n_img), np.arange(N_ANN), np.arange(N_OBJ),
                                      indexing="ij")
    frame = pd.DataFrame({
        "item_id": image[drawn], "annotator_id": annotator[drawn], "label": labels[drawn],
        "x_min": boxes[..., 0][drawn], "y_min": boxes[..., 1][drawn],
        "x_max": boxes[..., 2][drawn], "y_max": boxes[..., 3][drawn],
    })
    frame["annotation_id"] = pd.Series(np.arange(len(frame))).astype(str).radd("ann")
    return frame, gt, gt_labels


def generate_mix(mix: Mix, seed: int = 1):
    """(boxes frame, gt (n_img, n_obj, 4), gt labels, scale): ``scale`` (W, H, W, H) maps the
    coordinates into WBF's [0, 1]. The anchor-style mixes use ``generate`` unchanged."""
    if mix.image is None:
        assert (mix.n_ann, mix.n_obj, mix.p_extra) == (N_ANN, N_OBJ, 0.0)
        frame, gt, gt_labels = generate(seed, mix.n_img, mix.n_spammers, mix.jitter, mix.p_miss)
        return frame, gt, gt_labels, np.ones(4)
    rng = np.random.default_rng(seed)
    n_img, n_ann, n_obj = mix.n_img, mix.n_ann, mix.n_obj
    (lo, hi), extent = mix.size, np.array(mix.image, np.float64)
    if mix.crowded:
        # a grid with spacing 0.55-0.8 of the image's object size: same-class neighbours overlap
        # (IoU up to ~0.4), the case where a loose matching would fuse two objects into one
        cols = int(np.ceil(np.sqrt(n_obj)))
        base = rng.uniform(lo, hi, (n_img, 1, 1))
        wh = base * rng.uniform(0.85, 1.15, (n_img, n_obj, 2))
        spacing = base * rng.uniform(0.55, 0.8, (n_img, 1, 1))
        cell = np.stack([np.arange(n_obj) % cols, np.arange(n_obj) // cols], -1)
        origin = hi + rng.uniform(0, 1, (n_img, 1, 2)) * (extent - (cols + 2) * hi)
        centre = origin + cell * spacing + rng.normal(0, 0.08, (n_img, n_obj, 2)) * base
        gt = np.concatenate([centre - wh / 2, centre + wh / 2], -1)
    else:
        wh = rng.uniform(lo, hi, (n_img, n_obj, 2))
        corner = rng.uniform(0, 1, (n_img, n_obj, 2)) * (extent - wh)
        gt = np.concatenate([corner, corner + wh], -1)
    gt_labels = rng.integers(0, mix.n_classes, (n_img, n_obj))
    limit = np.tile(extent, 2)
    noise = rng.normal(0, 1, (n_img, n_ann, n_obj, 4))
    noise *= mix.jitter + mix.rel_jitter * np.tile(wh, 2)[:, None]
    boxes = np.clip(gt[:, None] + noise, 0, limit)
    labels = np.broadcast_to(gt_labels[:, None], (n_img, n_ann, n_obj)).copy()
    drawn = rng.random((n_img, n_ann, n_obj)) >= mix.p_miss

    def random_boxes(shape):
        size = rng.uniform(lo, hi, (*shape, 2))
        corner = rng.uniform(0, 1, (*shape, 2)) * (extent - size)
        return np.concatenate([corner, corner + size], -1), rng.integers(0, mix.n_classes, shape)

    spammers = slice(n_ann - mix.n_spammers, n_ann)
    boxes[:, spammers], labels[:, spammers] = random_boxes((n_img, mix.n_spammers, n_obj))
    drawn[:, spammers] = True
    # extra boxes: an honest annotator's box on nothing, one per image with probability p_extra
    extra_box, extra_label = random_boxes((n_img, n_ann))
    extra = rng.random((n_img, n_ann)) < mix.p_extra
    extra[:, spammers] = False
    image, annotator, _ = np.meshgrid(np.arange(n_img), np.arange(n_ann), np.arange(n_obj),
                                      indexing="ij")
    e_image, e_annotator = np.nonzero(extra)
    all_boxes = np.concatenate([boxes[drawn], extra_box[extra]])
    for low, high in ((0, 2), (1, 3)):  # annotation tools store sorted corners
        all_boxes[:, [low, high]] = np.sort(all_boxes[:, [low, high]], axis=1)
    frame = pd.DataFrame({
        "item_id": np.r_[image[drawn], e_image], "annotator_id": np.r_[annotator[drawn], e_annotator],
        "label": np.r_[labels[drawn], extra_label[extra]],
        **{c: all_boxes[:, k] for k, c in enumerate(("x_min", "y_min", "x_max", "y_max"))},
    })
    frame["annotation_id"] = pd.Series(np.arange(len(frame))).astype(str).radd("ann")
    return frame, gt, gt_labels, limit


def evaluate(image: np.ndarray, label: np.ndarray, box: np.ndarray, gt: np.ndarray,
             gt_labels: np.ndarray):
    """Object F1, precision, recall, mean IoU (matched pairs) at IoU >= 0.5, one-to-one, the
    IoU of each matched ground-truth object (Series by object key) and the mean IoU per true
    object (0 where missed: the mean over matched pairs alone rewards matching fewer objects)."""
    n_obj = gt.shape[1]
    cand = gt[image]  # (n_pred, n_obj, 4)
    iw = np.clip(np.minimum(box[:, None, 2], cand[..., 2]) - np.maximum(box[:, None, 0], cand[..., 0]), 0, None)
    ih = np.clip(np.minimum(box[:, None, 3], cand[..., 3]) - np.maximum(box[:, None, 1], cand[..., 1]), 0, None)
    inter = iw * ih
    union = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[:, None] + \
        (cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1]) - inter
    iou = np.where(gt_labels[image] == label[:, None], inter / union, 0.0)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(box)), best]
    ok = best_iou >= 0.5
    # one prediction per ground-truth object: the best-IoU one is the match, others are FPs
    gt_key = image[ok] * n_obj + best[ok]
    order = np.lexsort((-best_iou[ok], gt_key))
    first = np.r_[True, gt_key[order][1:] != gt_key[order][:-1]]
    tp_iou = best_iou[ok][order][first]
    tp, n_pred, n_gt = len(tp_iou), len(box), gt_labels.size
    precision, recall = tp / max(n_pred, 1), tp / n_gt
    matched = pd.Series(tp_iou, index=gt_key[order][first])
    return 2 * tp / (n_pred + n_gt), precision, recall, float(tp_iou.mean()), matched, tp_iou.sum() / n_gt


def run_wbf(frame: pd.DataFrame, n_ann: int = N_ANN, scale: np.ndarray | None = None):
    """WBF image by image (iou_thr=0.5, every box score 1); ``scale`` maps coordinates to [0, 1]
    and WBF's output back."""
    scale = np.ones(4) if scale is None else np.asarray(scale, np.float64)
    per_image = []
    for _, img in frame.groupby("item_id", sort=True):  # input prep, outside the timer
        lists = [img[img.annotator_id == a] for a in range(n_ann)]
        per_image.append(([l[["x_min", "y_min", "x_max", "y_max"]].to_numpy() / scale for l in lists],
                          [np.ones(len(l)) for l in lists],
                          [l["label"].to_numpy() for l in lists]))
    start = time.perf_counter()
    outputs = [weighted_boxes_fusion(b, s, l, iou_thr=0.5, skip_box_thr=0.0)
               for b, s, l in per_image]
    seconds = time.perf_counter() - start
    items = np.sort(frame["item_id"].unique())
    image = np.concatenate([np.full(len(o[0]), items[i]) for i, o in enumerate(outputs)])
    box = np.concatenate([o[0] for o in outputs]) * scale
    score = np.concatenate([o[1] for o in outputs])
    label = np.concatenate([o[2] for o in outputs]).astype(int)
    return seconds, image, box, score, label


def quality_by_mix(mixes: list[Mix] = MIXES) -> list[tuple[str, float, float, float]]:
    """Object F1 of ours and of WBF on every mix, in one run, as a Markdown table.

    Fair comparison: both get the same boxes (WBF in [0, 1], ours in the mix's units; IoU is
    unchanged by that scaling) and the same iou 0.5. Ours uses a quorum of a majority of the
    n annotators who saw each item (``n_assigned`` = n); "WBF >= q" keeps WBF's output with
    confidence >= q / n, which for score-1 boxes is exactly "fused from >= q boxes", the same
    support filter. "WBF" is its whole output.
    """
    print("| mix | annotators | boxes | ours F1 | WBF F1 | WBF >= q F1 | ours - best WBF "
          "| mean IoU of matched, ours / WBF >= q | IoU per true object (0 if missed), ours / "
          "WBF >= q | noise sd: generated / ours estimated | ours s | WBF s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for mix in mixes:
        frame, gt, gt_labels, scale = generate_mix(mix)
        frame["n_assigned"] = mix.n_ann
        start = time.perf_counter()
        result = merge_boxes_reliability_weighted(frame, iou_threshold=0.5)[0]
        t_ours = time.perf_counter() - start
        merged = result.merged
        ours = evaluate(merged["item_id"].to_numpy(), merged["label"].to_numpy(),
                        merged[["x_min", "y_min", "x_max", "y_max"]].to_numpy(), gt, gt_labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            t_wbf, w_image, w_box, w_score, w_label = run_wbf(frame, mix.n_ann, scale)
        wbf = evaluate(w_image, w_label, w_box, gt, gt_labels)
        quorum = mix.n_ann // 2 + 1
        keep = w_score >= quorum / mix.n_ann - 1e-9
        wbf_q = evaluate(w_image[keep], w_label[keep], w_box[keep], gt, gt_labels)
        margin = ours[0] - max(wbf[0], wbf_q[0])
        generated = (f"{mix.jitter:g}" if not mix.rel_jitter else
                     f"{mix.rel_jitter:.0%} of size" + (f" + {mix.jitter:g}" if mix.jitter else ""))
        rows.append((mix.name, ours[0], wbf[0], wbf_q[0]))
        print(f"| {mix.name} | {mix.n_ann} ({mix.n_spammers} spam) | {len(frame):,} "
              f"| {ours[0]:.4f} | {wbf[0]:.4f} | {wbf_q[0]:.4f} | {margin:+.4f} "
              f"| {ours[3]:.4f} / {wbf_q[3]:.4f} | {ours[5]:.4f} / {wbf_q[5]:.4f} "
              f"| {generated} / {result.pointing_noise:.3g} | {t_ours:.2f} | {t_wbf:.2f} |",
              flush=True)
    worst = min(rows, key=lambda r: r[1] - max(r[2], r[3]))
    print(f"ours >= both WBF F1 on {sum(r[1] >= max(r[2], r[3]) for r in rows)} of {len(rows)} "
          f"mixes; closest: {worst[0]} ({worst[1] - max(worst[2], worst[3]):+.4f})")
    return rows


WBF_PROCESS = """
import sys, warnings
import numpy as np, pandas as pd
from ensemble_boxes import weighted_boxes_fusion
warnings.simplefilter("ignore")
frame = pd.read_csv(sys.argv[1])
out = []
for item, img in frame.groupby("item_id", sort=True):
    lists = [img[img.annotator_id == a] for a in sorted(img.annotator_id.unique())]
    b, s, l = weighted_boxes_fusion([g[["x_min", "y_min", "x_max", "y_max"]].to_numpy() for g in lists],
                                    [np.ones(len(g)) for g in lists], [g["label"].to_numpy() for g in lists],
                                    iou_thr=0.5, skip_box_thr=0.0)
    out.append(pd.DataFrame({"item_id": item, "label": l.astype(int), "x_min": b[:, 0], "y_min": b[:, 1],
                             "x_max": b[:, 2], "y_max": b[:, 3], "confidence": s}))
pd.concat(out).to_csv(sys.argv[2], index=False)
"""


def whole_process(n_boxes: int = 100_000, repeats: int = 3) -> None:
    """``merge-boxes`` as a process vs a WBF script as a process: CSV in, CSV out, imports included."""
    n_img = int(np.ceil(n_boxes / (N_ANN * N_OBJ * 0.92)))
    frame, _, _ = generate(2, n_img)
    frame = frame.iloc[:n_boxes].copy()
    # the command rejects inverted corners (exit 1) where WBF swaps them: give both sorted corners
    for low, high in (("x_min", "x_max"), ("y_min", "y_max")):
        lo, hi = frame[low].to_numpy(), frame[high].to_numpy()
        frame[low], frame[high] = np.minimum(lo, hi), np.maximum(lo, hi)
    work = Path(tempfile.mkdtemp(prefix="consensus_quality-boxes-"))
    source = work / "boxes.csv"
    frame.drop(columns=["annotation_id"]).to_csv(source, index=False)
    (work / "wbf.py").write_text(WBF_PROCESS)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    commands = {
        "ours: annotation-pipeline merge-boxes": [sys.executable, "-m", "annotation_pipeline.cli",
                                                  "merge-boxes", "--input", str(source),
                                                  "--output", str(work / "ours.csv")],
        "WBF script (pandas CSV in/out)": [sys.executable, str(work / "wbf.py"), str(source),
                                           str(work / "wbf.csv")],
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, cwd=work, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    print(f"whole process, {len(frame):,} boxes ({n_img:,} images), CSV in -> CSV out, best of {repeats}")
    for name, values in times.items():
        print(f"  {name:<40}{min(values):>8.2f} s   (runs: {', '.join(f'{v:.2f}' for v in values)})")
    ours, wbf = min(times["ours: annotation-pipeline merge-boxes"]), min(times["WBF script (pandas CSV in/out)"])
    print(f"  whole-process ratio WBF / ours: {wbf / ours:.1f}x (target >= 15x)")


def main() -> None:
    frame, gt, gt_labels = generate()
    n_boxes = len(frame)
    ours_times = []
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        result, _ = merge_boxes_reliability_weighted(frame, iou_threshold=0.5)
        ours_times.append(time.perf_counter() - start)
    with warnings.catch_warnings():
        # jittered corners of a few small boxes cross; WBF warns and swaps them, as it should
        warnings.simplefilter("ignore", UserWarning)
        t_wbf, w_image, w_box, w_score, w_label = run_wbf(frame)
    t_ours = min(ours_times)
    merged = result.merged
    o_box = merged[["x_min", "y_min", "x_max", "y_max"]].to_numpy()
    ours_q = evaluate(merged["item_id"].to_numpy(), merged["label"].to_numpy(), o_box, gt, gt_labels)
    wbf_all = evaluate(w_image, w_label, w_box, gt, gt_labels)
    keep = w_score >= 0.6 - 1e-9
    wbf_q = evaluate(w_image[keep], w_label[keep], w_box[keep], gt, gt_labels)
    print(f"{n_boxes:,} boxes: {N_IMG:,} images x {N_ANN} annotators x {N_OBJ} objects, "
          f"jitter 0.01, miss p={P_MISS}, annotator {SPAMMER} spams random boxes")
    print(f"{'method':<34}{'time s':>8}{'boxes/s':>11}{'objects':>9}{'F1':>8}{'prec':>8}"
          f"{'recall':>8}{'meanIoU':>9}")
    for name, seconds, count, q in (
            ("WBF (ensemble-boxes), all output", t_wbf, len(w_box), wbf_all),
            ("WBF, conf >= 0.6 (3 of 5)", t_wbf, int(keep.sum()), wbf_q),
            ("ours, reliability-weighted (quorum)", t_ours, len(merged), ours_q)):
        print(f"{name:<34}{seconds:>8.3f}{n_boxes / seconds:>11,.0f}{count:>9,}{q[0]:>8.4f}"
              f"{q[1]:>8.4f}{q[2]:>8.4f}{q[3]:>9.4f}")
    print(f"throughput ratio ours / WBF: {t_wbf / t_ours:.1f}x   "
          f"(ours best of 3: {', '.join(f'{t:.3f}' for t in ours_times)} s; WBF 1 run)")
    print(f"below quorum (kept for review): {result.counts['clusters_below_quorum']:,} clusters, "
          f"{result.counts['objects_below_quorum']:,} boxes; reconciles: "
          f"{result.counts['objects_in_merged'] + result.counts['objects_below_quorum'] == n_boxes}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixes", action="store_true",
                        help="only the quality table over every noise mix (ours vs WBF)")
    args = parser.parse_args()
    if not args.mixes:
        main()
        print()
    quality_by_mix()
    if not args.mixes:
        print()
        whole_process()
