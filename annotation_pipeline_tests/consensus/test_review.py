"""The review queue: unreliable-only clusters dismissed with a reason, the rest ranked by gain in budget."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.review import ReviewPolicy
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.contracts import ANNOTATIONS, GOLD_LABELS, REVIEW_QUEUE, VENDOR_TASKS


def crowd_with_a_spammer(seed: int = 0, n_items: int = 40):
    """Three honest annotators draw a car and a person per item (one of them misses the person on
    every fifth item); a spammer draws one random box per item; all answer the scene."""
    rng = np.random.default_rng(seed)
    rows, tasks = [], []
    for i in range(n_items):
        item = f"it{i:03d}"
        tasks.append({"batch_id": "b1", "task_id": f"t{i}", "item_id": item, "is_gold": False,
                      "vendor": "v", "image_file": f"{item}.png", "image_width": 640.0,
                      "image_height": 480.0, "overlap": 4, "ontology_version": "1.0.0",
                      "guidelines_version": "g1", "model_version": "m1"})
        for annotator in ("h0", "h1", "h2", "spam"):
            scene = "day" if annotator != "spam" else rng.choice(["day", "night", "fog"])
            rows.append(dict(kind="choice", label=scene, item_id=item, annotator_id=annotator))
            if annotator == "spam":
                x, y = rng.uniform(300, 500, 2)
                rows.append(dict(kind="box", label="car", item_id=item, annotator_id=annotator,
                                 x_min=x, y_min=y, x_max=x + 40, y_max=y + 40))
                continue
            j = rng.normal(0, 1.0, 8)
            rows.append(dict(kind="box", label="car", item_id=item, annotator_id=annotator,
                             x_min=100 + j[0], y_min=100 + j[1], x_max=200 + j[2], y_max=180 + j[3]))
            drawn_by = 1 if i % 5 == 0 else 3  # on every fifth item only h0 sees the person
            if int(annotator[1]) < drawn_by:
                rows.append(dict(kind="box", label="person", item_id=item, annotator_id=annotator,
                                 x_min=20 + j[4], y_min=20 + j[5], x_max=60 + j[6], y_max=120 + j[7]))
    frame = pd.DataFrame(rows)
    frame = frame.assign(
        annotation_id=[f"an{j}" for j in range(len(frame))], batch_id="b1",
        task_id=frame["item_id"].str.replace("it", "t"), vendor="v", is_gold=False,
        image_width=640.0, image_height=480.0, lead_time_s=5.0, source_file="f.json",
        source_sha256="0" * 64, ontology_version="1.0.0", guidelines_version="g1",
        model_version="m1", geometry_wkb=None)
    for column in ("x_min", "y_min", "x_max", "y_max"):
        frame[column] = frame[column].astype(float)
    return (ANNOTATIONS.conform(frame), VENDOR_TASKS.conform(pd.DataFrame(tasks)),
            GOLD_LABELS.empty())


def test_a_box_only_the_spammer_drew_is_dismissed_with_its_reason_and_still_traceable():
    annotations, tasks, gold = crowd_with_a_spammer()
    result = run_consensus(annotations, tasks, gold)
    REVIEW_QUEUE.validate(result.review_queue)
    queue = result.review_queue
    spam_ids = set(annotations.loc[(annotations.annotator_id == "spam")
                                   & (annotations.kind == "box"), "annotation_id"])
    spam_rows = queue[queue["annotation_ids"].isin(spam_ids)]
    assert len(spam_rows) == 40
    assert spam_rows["status"].eq("dismissed").all()
    assert spam_rows["reason"].eq("unreliable_annotators_only").all()
    # never released, and every object annotation is in a label or a queue row
    released_ids = " ".join(result.labels["annotation_ids"].dropna()).split()
    assert not spam_ids & set(released_ids)
    objects = annotations[annotations.kind == "box"]
    objects_in = (result.labels.loc[result.labels.kind == "box", "n_annotators"].sum()
                  + queue.loc[queue.kind == "box", "n_annotators"].sum())
    assert objects_in == len(objects)


def test_the_queue_takes_the_highest_expected_gain_first_and_stays_within_budget():
    annotations, tasks, gold = crowd_with_a_spammer()
    policy = ReviewPolicy(budget_share=0.02)
    result = run_consensus(annotations, tasks, gold, policy=policy)
    queue = result.review_queue
    queued, deferred = queue[queue.status == "queued"], queue[queue.status == "deferred"]
    candidates = result.counts["consensus_candidates"]
    assert len(queued) == policy.budget(candidates) == int(0.02 * candidates) > 0
    assert len(deferred) > 0  # the person boxes only h0 drew: real, reliable, over budget
    assert queued["expected_gain"].min() >= deferred["expected_gain"].max()
    # the person h0 drew alone is likely real: high gain; nothing deferred is released
    assert (deferred["label"] == "person").all() and deferred["expected_gain"].gt(0.5).all()
    assert not set(deferred["annotation_ids"]) & set(result.labels["annotation_ids"])


def test_a_generous_budget_queues_every_candidate_worth_a_review():
    annotations, tasks, gold = crowd_with_a_spammer()
    result = run_consensus(annotations, tasks, gold, policy=ReviewPolicy(budget_share=1.0))
    status = result.review_queue["status"]
    assert set(status) == {"queued", "dismissed"}
    assert result.counts["queued_for_review"] == 8  # the person on every fifth item


def test_a_small_box_of_another_class_is_outvoted_with_the_slack_the_merge_matched_with():
    from annotation_pipeline.consensus.review import overlaps_merged_object

    # a 6 px box two pixels off a merged 6 px object of another class: plain IoU 0.29, but with
    # corner noise of 1 px the merge itself would have matched them (IoU of the grown boxes 0.53)
    below = pd.DataFrame({"item_id": ["i"], "label": ["cat"], "x_min": [12.0], "y_min": [12.0],
                          "x_max": [18.0], "y_max": [18.0]})
    merged = pd.DataFrame({"item_id": ["i"], "label": ["dog"], "x_min": [10.0], "y_min": [10.0],
                           "x_max": [16.0], "y_max": [16.0]})
    assert not overlaps_merged_object(below, merged, 0.5)[0]
    assert overlaps_merged_object(below, merged, 0.5, pointing_noise=1.0)[0]
    # the same class is the merge's business, not an outvote; a large box gets no slack
    assert not overlaps_merged_object(below, merged.assign(label="cat"), 0.5, pointing_noise=1.0)[0]
    # 100 px boxes 35 px apart (IoU 0.48): the slack fades on large boxes (0.01 px here)
    big_below = below.assign(x_min=35.0, y_min=0.0, x_max=135.0, y_max=100.0)
    big_merged = merged.assign(x_min=0.0, y_min=0.0, x_max=100.0, y_max=100.0)
    assert not overlaps_merged_object(big_below, big_merged, 0.5, pointing_noise=1.0)[0]


def test_the_consensus_result_records_the_corner_noise_its_box_merge_allowed_for():
    annotations, tasks, gold = crowd_with_a_spammer()
    result = run_consensus(annotations, tasks, gold)
    assert 0.5 < result.pointing_noise["box"] < 1.6  # the honest boxes' corners jitter with sd 1
    assert result.scene_model is not None and result.method == "auto"
    table = result.scene_model.choice_.table()
    assert table["used"].any() and set(table["candidate"]) >= {"vote"}
    # the table's "used" rows are the models whose posteriors were averaged, in the same order
    assert list(table.loc[table["used"], "candidate"]) == result.scene_model.members_
