"""Classification aggregators agree with crowd-kit, and the stage releases only confident labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from annotation_pipeline.consensus.aggregators import (
    AnswersError,
    DawidSkene,
    GoldWeightedVote,
    MajorityVote,
    aggregate_labels,
    choose_method,
    run_consensus,
)
from annotation_pipeline.contracts import (
    AGREEMENT_METRICS,
    ANNOTATIONS,
    CONSENSUS_LABELS,
    GOLD_LABELS,
    REVIEW_QUEUE,
    VENDOR_TASKS,
)

SCENES = np.array(["day", "fog", "night", "rain"])


def crowd(seed: int, n_items: int = 400, n_annotators: int = 12, per_item: int = 3,
          n_spammers: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n_items)
    accuracy = rng.uniform(0.55, 0.95, n_annotators)
    accuracy[:n_spammers] = 0.25
    item = np.repeat(np.arange(n_items), per_item)
    annotator = np.concatenate([rng.choice(n_annotators, per_item, replace=False)
                                for _ in range(n_items)])
    correct = rng.random(len(item)) < accuracy[annotator]
    label = np.where(correct, truth[item], rng.integers(0, 4, len(item)))
    answers = pd.DataFrame({"item_id": [f"item{i:04d}" for i in item],
                            "annotator_id": [f"ann{a:02d}" for a in annotator],
                            "label": SCENES[label]})
    return answers, SCENES[truth]


def as_crowdkit(answers: pd.DataFrame) -> pd.DataFrame:
    return answers.rename(columns={"item_id": "task", "annotator_id": "worker"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_posteriors_match_crowd_kit_iteration_for_iteration(seed):
    answers, _ = crowd(seed)
    # no smoothing and a fixed number of EM steps: the same algorithm must give the same numbers
    ours = DawidSkene(n_iter=10, tol=-np.inf, smoothing=0.0).fit(answers)
    theirs = CrowdKitDawidSkene(n_iter=10, tol=-np.inf).fit(as_crowdkit(answers))
    expected = theirs.probas_.reindex(index=ours.probas_.index, columns=ours.probas_.columns)
    np.testing.assert_allclose(ours.probas_.to_numpy(), expected.to_numpy(), atol=1e-6)
    errors = theirs.errors_.reindex(ours.errors_.index).reindex(columns=ours.errors_.columns)
    np.testing.assert_allclose(ours.errors_.to_numpy(), errors.to_numpy(), atol=1e-6)


@pytest.mark.parametrize("seed", [3, 4])
def test_dawid_skene_with_defaults_labels_as_well_as_crowd_kit(seed):
    answers, truth = crowd(seed)
    ours = DawidSkene().fit_predict(answers)
    theirs = CrowdKitDawidSkene(n_iter=100).fit_predict(as_crowdkit(answers))
    truth = pd.Series(truth, index=[f"item{i:04d}" for i in range(len(truth))])
    our_accuracy = (ours == truth.reindex(ours.index)).mean()
    their_accuracy = (theirs == truth.reindex(theirs.index)).mean()
    assert our_accuracy >= their_accuracy - 0.01
    assert (ours == theirs.reindex(ours.index)).mean() > 0.97


def test_dawid_skene_finds_the_spammers():
    answers, _ = crowd(0, n_items=1500)
    skills = DawidSkene().fit(answers).skills_
    assert set(skills.nsmallest(2).index) == {"ann00", "ann01"}


def test_majority_vote_matches_crowd_kit_probabilities():
    answers, _ = crowd(5)
    ours = MajorityVote().fit(answers)
    theirs = CrowdKitMajorityVote().fit_predict_proba(as_crowdkit(answers))
    theirs = theirs.reindex(index=ours.probas_.index, columns=ours.probas_.columns).fillna(0.0)
    np.testing.assert_allclose(ours.probas_.to_numpy(), theirs.to_numpy())


def test_gold_weighted_vote_lets_accurate_annotators_outvote_a_spamming_majority():
    # two reliable annotators vs three spammers who agree on a wrong answer
    gold_items = [f"g{i}" for i in range(20)]
    rows = [(g, a, "day") for g in gold_items for a in ("good1", "good2")]
    rows += [(g, s, "night") for g in gold_items for s in ("spam1", "spam2", "spam3")]
    rows += [("x", "good1", "fog"), ("x", "good2", "fog"),
             ("x", "spam1", "rain"), ("x", "spam2", "rain"), ("x", "spam3", "rain")]
    answers = pd.DataFrame(rows, columns=["item_id", "annotator_id", "label"])
    gold = pd.DataFrame({"item_id": gold_items, "label": "day"})
    model = GoldWeightedVote().fit(answers, gold)
    assert model.labels_["x"] == "fog"
    assert model.confidence_["x"] > 0.9
    assert MajorityVote().fit(answers).labels_["x"] == "rain"
    assert model.weights_["spam1"] == 0.0


def test_aggregate_labels_reports_label_confidence_and_votes_per_item():
    answers, _ = crowd(6, n_items=50)
    result = aggregate_labels(answers, method="mv")
    assert list(result.columns) == ["item_id", "label", "confidence", "n_votes"]
    assert result["n_votes"].eq(3).all()
    assert result["confidence"].between(0, 1).all()
    assert set(result["item_id"]) == set(answers["item_id"])


def test_auto_picks_dawid_skene_for_plenty_of_answers_and_gold_vote_for_few():
    many, _ = crowd(0, n_items=2000)
    few, _ = crowd(0, n_items=40)
    gold = pd.DataFrame({"item_id": ["item0000"], "label": ["day"]})
    assert choose_method(many) == "ds"
    assert choose_method(few, gold) == "wmv"
    assert choose_method(few) == "mv"
    assert aggregate_labels(few, method="auto", gold=gold).attrs["method"] == "wmv"


def test_answers_without_a_label_column_are_rejected_with_the_column_named():
    with pytest.raises(AnswersError, match="missing column.*label"):
        aggregate_labels(pd.DataFrame({"item_id": ["a"], "annotator_id": ["b"]}))
    with pytest.raises(AnswersError, match=r"empty label.*row \[1\]"):
        aggregate_labels(pd.DataFrame({"item_id": ["a", "a"], "annotator_id": ["b", "c"],
                                       "label": ["day", None]}))


# ------------------------------------------------------------------------------- stage

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
