"""The consensus stage releases only confident labels and loses nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.contracts import (
    AGREEMENT_METRICS,
    ANNOTATIONS,
    CONSENSUS_LABELS,
    GOLD_LABELS,
    REVIEW_QUEUE,
    VENDOR_TASKS,
)

SCENES = np.array(["day", "fog", "night", "rain"])


def stage_inputs(seed: int = 0):
    """Five annotators on 30 items (+ 6 gold items): scene choice, one car box, one sign."""
    rng = np.random.default_rng(seed)
    annotators = [f"w{k}" for k in range(5)]
    rows = []
    tasks = []
    gold = []
    for i in range(36):
        item = f"it{i:02d}"
        is_gold = i >= 30
        scene = SCENES[i % 4]
        tasks.append({"batch_id": "b1", "task_id": f"t{i}", "item_id": item, "is_gold": is_gold,
                      "vendor": "v", "image_file": f"{item}.png", "image_width": 640.0,
                      "image_height": 480.0, "overlap": 5, "ontology_version": "1.0.0",
                      "guidelines_version": "g1", "model_version": "m1"})
        if is_gold:
            gold.append({"item_id": item, "kind": "choice", "label": scene, "x_min": np.nan,
                         "y_min": np.nan, "x_max": np.nan, "y_max": np.nan,
                         "geometry_wkb": None})
        for k, annotator in enumerate(annotators):
            # item 0: a 2-2-1 split, the stage must not release it
            answer = scene if (i != 0 or k < 2) else (SCENES[(i + 1) % 4] if k < 4 else SCENES[2])
            rows.append(dict(kind="choice", label=answer, item_id=item, annotator_id=annotator,
                             is_gold=is_gold))
            if k < 4:  # annotator w4 never draws: only a 4/5 majority per object
                jitter = rng.normal(0, 1.5, 4)
                rows.append(dict(kind="box", label="car", item_id=item, annotator_id=annotator,
                                 is_gold=is_gold, x_min=100 + jitter[0], y_min=100 + jitter[1],
                                 x_max=200 + jitter[2], y_max=180 + jitter[3]))
                poly = shapely.box(300 + jitter[0], 50, 360 + jitter[2], 120)
                rows.append(dict(kind="polygon", label="sign", item_id=item,
                                 annotator_id=annotator, is_gold=is_gold,
                                 geometry_wkb=shapely.to_wkb(poly)))
        # one stray box from one annotator: below quorum
        rows.append(dict(kind="box", label="person", item_id=item, annotator_id="w0",
                         is_gold=is_gold, x_min=10.0, y_min=10.0, x_max=30.0, y_max=60.0))
    frame = pd.DataFrame(rows)
    n = len(frame)
    frame = frame.assign(
        annotation_id=[f"an{j}" for j in range(n)], batch_id="b1",
        task_id=frame["item_id"].str.replace("it", "t"), vendor="v",
        image_width=640.0, image_height=480.0, lead_time_s=5.0, source_file="f.json",
        source_sha256="0" * 64, ontology_version="1.0.0", guidelines_version="g1",
        model_version="m1")
    for column in ("x_min", "y_min", "x_max", "y_max"):
        frame[column] = frame[column].astype(float)
    annotations = ANNOTATIONS.conform(frame)
    return annotations, VENDOR_TASKS.conform(pd.DataFrame(tasks)), GOLD_LABELS.conform(
        pd.DataFrame(gold))


def test_stage_releases_confident_labels_and_queues_the_rest_without_losing_anything():
    annotations, tasks, gold = stage_inputs()
    result = run_consensus(annotations, tasks, gold, method="mv", min_confidence=0.7)
    CONSENSUS_LABELS.validate(result.labels)
    REVIEW_QUEUE.validate(result.review_queue)
    AGREEMENT_METRICS.validate(result.agreement)
    scene = result.labels[result.labels.kind == "choice"]
    # gold items calibrate but are never released
    assert not scene["item_id"].str.startswith("it3").any()
    assert "it00" not in set(scene["item_id"])
    queued = result.review_queue.set_index(["item_id", "kind"])
    assert queued.loc[("it00", "choice"), "reason"] == "low_confidence"
    assert len(queued.loc[("it00", "choice"), "annotation_ids"].split()) == 5
    assert len(scene) == 29
    # objects: one car and one sign per non-gold item, each from 4 annotators
    cars = result.labels[result.labels.label == "car"]
    signs = result.labels[result.labels.label == "sign"]
    assert len(cars) == 30 and cars["n_annotators"].eq(4).all() and cars["n_assigned"].eq(5).all()
    assert len(signs) == 30 and signs["geometry_wkb"].notna().all()
    assert cars["x_min"].sub(100).abs().max() < 3
    # the stray person box is kept for review, not dropped and not released
    stray = result.review_queue[result.review_queue.label == "person"]
    assert len(stray) == 30 and stray["reason"].eq("below_quorum").all()
    # counts reconcile: every non-gold object annotation is in a label or in the queue
    objects = annotations[(annotations.kind != "choice") & ~annotations.is_gold]
    in_labels = result.labels.loc[result.labels.kind != "choice", "n_annotators"].sum()
    in_queue = result.review_queue.loc[result.review_queue.kind != "choice", "n_annotators"].sum()
    assert in_labels + in_queue == len(objects)
    assert result.counts["scene_items_labeled"] + result.counts["scene_items_queued"] == 30


def test_stage_reports_agreement_and_reliability_per_annotator():
    annotations, tasks, gold = stage_inputs()
    result = run_consensus(annotations, tasks, gold)
    metrics = result.agreement
    assert {"cohen_kappa", "fleiss_kappa", "krippendorff_alpha"} <= set(
        metrics.loc[metrics.scope == "batch", "metric"])
    assert {"mean_iou", "merged_share"} <= set(metrics.loc[metrics.scope == "class", "metric"])
    reliability = result.annotator_reliability.set_index("annotator_id")
    assert reliability.loc["w0", "gold_accuracy"] == 1.0
    assert reliability.loc["w0", "n_gold"] == 6
    # w4 never draws boxes: no geometry weight can be earned
    assert np.isnan(reliability.loc["w4", "geometry_weight"])
