"""Classification aggregators agree with crowd-kit (the oracle) and label as well as it does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from annotation_pipeline.consensus.auto import aggregate_labels
from annotation_pipeline.consensus.dawid_skene import DawidSkene
from annotation_pipeline.consensus.encoding import AnswersError
from annotation_pipeline.consensus.gold_weighted_vote import GoldWeightedVote
from annotation_pipeline.consensus.majority_vote import MajorityVote

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


def test_answers_without_a_label_column_are_rejected_with_the_column_named():
    with pytest.raises(AnswersError, match="missing column.*label"):
        aggregate_labels(pd.DataFrame({"item_id": ["a"], "annotator_id": ["b"]}))
    with pytest.raises(AnswersError, match=r"empty label.*row \[1\]"):
        aggregate_labels(pd.DataFrame({"item_id": ["a", "a"], "annotator_id": ["b", "c"],
                                       "label": ["day", None]}))
