"""The hierarchical Dawid-Skene and ``auto`` checked against crowd-kit (the oracle) and the truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote
from crowdkit.aggregation import OneCoinDawidSkene as CrowdKitOneCoin

from annotation_pipeline.consensus.auto import AutoConsensus, aggregate_labels
from annotation_pipeline.consensus.bayesian_dawid_skene import BayesianDawidSkene, OneCoinDawidSkene
from annotation_pipeline.consensus.calibration import expected_calibration_error, reliability_table


def crowd(seed: int, n_items: int = 600, n_annotators: int = 30, per_item: int = 4,
          k: int = 4, spam_share: float = 0.2, long_tail: bool = False):
    """One-coin annotators (accuracy 0.5-0.95), a share of uniform spammers; truth by item."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    accuracy = rng.uniform(0.5, 0.95, n_annotators)
    accuracy[: int(spam_share * n_annotators)] = 1.0 / k
    activity = rng.pareto(1.2, n_annotators) + 0.05 if long_tail else np.ones(n_annotators)
    p = activity / activity.sum()
    item = np.repeat(np.arange(n_items), per_item)
    annotator = np.concatenate([rng.choice(n_annotators, per_item, replace=False, p=p)
                                for _ in range(n_items)])
    correct = rng.random(len(item)) < accuracy[annotator]
    wrong = (truth[item] + rng.integers(1, k, len(item))) % k
    label = np.where(correct, truth[item], wrong)
    answers = pd.DataFrame({"item_id": item, "annotator_id": annotator, "label": label})
    return answers, pd.Series(truth)


def as_crowdkit(answers: pd.DataFrame) -> pd.DataFrame:
    return answers.rename(columns={"item_id": "task", "annotator_id": "worker"})


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.sort_index().to_numpy() == truth.to_numpy()).mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_without_priors_the_bayesian_model_is_crowd_kits_dawid_skene(seed):
    answers, _ = crowd(seed, n_items=300, n_annotators=10, per_item=3)
    ours = BayesianDawidSkene(coin_strength=0.0, skill_strength=0.0, class_prior_strength=0.0,
                              n_iter=10, tol=-np.inf).fit(answers)
    theirs = CrowdKitDawidSkene(n_iter=10, tol=-np.inf).fit(as_crowdkit(answers))
    expected = theirs.probas_.reindex(index=ours.probas_.index, columns=ours.probas_.columns)
    np.testing.assert_allclose(ours.probas_.to_numpy(), expected.to_numpy(), atol=1e-6)


def test_one_coin_model_ranks_annotators_as_crowd_kits_one_coin():
    answers, truth = crowd(2, n_items=1500, n_annotators=20, per_item=3)
    ours = OneCoinDawidSkene().fit(answers)
    theirs = CrowdKitOneCoin(n_iter=100).fit(as_crowdkit(answers))
    skills = pd.concat([ours.skills_, theirs.skills_.rename("theirs")], axis=1)
    assert skills.corr(method="spearman").iloc[0, 1] > 0.95
    assert (ours.labels_ == theirs.labels_.reindex(ours.labels_.index)).mean() > 0.97
    assert accuracy(ours.labels_, truth) >= accuracy(theirs.labels_, truth) - 0.005


def test_infinite_priors_reduce_to_a_vote_weighted_by_class_priors():
    answers, _ = crowd(3, n_items=400, spam_share=0.0)
    pooled = BayesianDawidSkene(coin_strength=math.inf, skill_strength=math.inf).fit(answers)
    assert pooled.skills_.nunique() == 1  # one accuracy shared by everybody
    votes = CrowdKitMajorityVote().fit_predict_proba(as_crowdkit(answers))
    clear = votes.max(axis=1) > 0.5  # no tie: the vote alone decides
    assert (pooled.labels_[clear.index[clear]] == votes[clear].idxmax(axis=1)).all()


@pytest.mark.parametrize("regime", [
    dict(seed=4, spam_share=0.3),                               # many spammers, dense
    dict(seed=5, n_annotators=80, long_tail=True, per_item=3),  # thin marketplace
    dict(seed=6, k=10, n_annotators=40, long_tail=True),        # many classes, sparse
])
def test_auto_labels_at_least_as_well_as_the_better_of_crowd_kits_vote_and_dawid_skene(regime):
    answers, truth = crowd(**regime)
    best = max(accuracy(CrowdKitMajorityVote().fit_predict(as_crowdkit(answers)), truth),
               accuracy(CrowdKitDawidSkene(n_iter=100).fit_predict(as_crowdkit(answers)), truth))
    result = aggregate_labels(answers, "auto")
    assert result.attrs["method"] == "auto"
    ours = result.set_index("item_id")["label"]
    assert accuracy(ours, truth) >= best - 0.005


def test_auto_confidence_is_calibrated_on_the_sample_worlds_workforce():
    # the demo's workforce (data/sample_settings.json): four one-coin annotators and a spammer,
    # three of them per item, four scene classes
    rng = np.random.default_rng(7)
    n, k = 3000, 4
    profile = np.array([0.95, 0.90, 0.85, 0.80, 0.25])
    truth = rng.integers(0, k, n)
    annotator = np.argsort(rng.random((n, 5)), axis=1)[:, :3].ravel()
    item = np.repeat(np.arange(n), 3)
    correct = rng.random(len(item)) < profile[annotator]
    label = np.where(correct, truth[item], rng.integers(0, k, len(item)))
    model = AutoConsensus().fit(pd.DataFrame({"item_id": item, "annotator_id": annotator,
                                              "label": label}))
    right = model.labels_.sort_index().to_numpy() == truth
    assert expected_calibration_error(model.confidence_.sort_index().to_numpy(), right) <= 0.05
    assert model.skills_.idxmin() == 4  # the spammer


def test_expected_calibration_error_matches_scikit_learns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 5000)
    correct = rng.random(5000) < confidence ** 1.5
    table = reliability_table(confidence, correct, n_bins=10)
    filled = table[table["n"] > 0]
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    np.testing.assert_allclose(filled["accuracy"], prob_true)
    np.testing.assert_allclose(filled["mean_confidence"], prob_pred)
    ece = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(float((filled["n"] * (filled["accuracy"]
                                                      - filled["mean_confidence"]).abs()).sum()
                                      / 5000))
    assert expected_calibration_error(np.full(100, 0.8), np.arange(100) < 80) == pytest.approx(0.0)
