"""``auto`` picks the crowd model the answers support (issue 23), checked against crowd-kit in the same run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import GLAD as CrowdKitGLAD
from crowdkit.aggregation import MACE as CrowdKitMACE
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from annotation_pipeline.consensus.auto import AutoConsensus
from annotation_pipeline.consensus.glad import GLAD
from annotation_pipeline.consensus.mace import MACE
from annotation_pipeline.consensus.majority_vote import MajorityVote, fit_vote_model
from annotation_pipeline.consensus.model_choice import BASELINE, informative, stacking_weights


def draw(rng, confusion: np.ndarray, truth: np.ndarray, item: np.ndarray, worker: np.ndarray):
    """Labels drawn from each worker's confusion matrix (workers, K observed, K true)."""
    cum = confusion[worker, :, truth[item]].cumsum(axis=1)
    return (rng.random(len(item))[:, None] > cum).sum(axis=1).clip(0, confusion.shape[1] - 1)


def frame(item, worker, label, truth):
    return (pd.DataFrame({"item_id": item, "annotator_id": worker, "label": label}),
            pd.Series(truth))


def biased_panel(seed: int, n_items: int = 150, n_workers: int = 11):
    """Bluebird's shape: everybody labels every item; most workers lean to one class, some are
    adversarial, so the vote is wrong on many items of the class the majority under-calls."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    recall = np.where(rng.random(n_workers)[:, None] < 0.6,
                      np.c_[rng.uniform(0.2, 0.55, n_workers), rng.uniform(0.9, 0.98, n_workers)],
                      rng.uniform(0.7, 0.95, (n_workers, 2)))
    recall[: n_workers // 10] = 0.25  # adversarial: answer against the truth
    confusion = np.zeros((n_workers, 2, 2))
    for t in (0, 1):
        confusion[:, t, t], confusion[:, 1 - t, t] = recall[:, t], 1 - recall[:, t]
    item, worker = np.repeat(np.arange(n_items), n_workers), np.tile(np.arange(n_workers), n_items)
    return frame(item, worker, draw(rng, confusion, truth, item, worker), truth)


def swapped_classes(seed: int, n_items: int = 600, n_workers: int = 12, k: int = 8):
    """Many classes, dense workers, each with private systematic swaps of two classes."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    acc = rng.uniform(0.7, 0.95, n_workers)
    confusion = np.broadcast_to(((1 - acc) / (k - 1))[:, None, None], (n_workers, k, k)).copy()
    confusion[:, np.arange(k), np.arange(k)] = acc[:, None]
    for w in range(n_workers):
        for t in rng.choice(k, 3, replace=False):
            confusion[w, :, t] = 0.02 / k
            confusion[w, (t + rng.integers(1, k)) % k, t] = 0.75
            confusion[w, t, t] = 1 - confusion[w, :, t].sum() + confusion[w, t, t]
    item = np.repeat(np.arange(n_items), 5)
    worker = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :5].ravel()
    return frame(item, worker, draw(rng, confusion, truth, item, worker), truth)


def equal_workers(seed: int, n_items: int = 500, n_workers: int = 20, k: int = 3):
    """Every worker equally good: nothing richer than the vote is there to find."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    item = np.repeat(np.arange(n_items), 5)
    worker = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :5].ravel()
    right = rng.random(len(item)) < 0.7
    label = np.where(right, truth[item], (truth[item] + rng.integers(1, k, len(item))) % k)
    return frame(item, worker, label, truth)


def as_crowdkit(answers: pd.DataFrame) -> pd.DataFrame:
    return answers.rename(columns={"item_id": "task", "annotator_id": "worker"})


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.reindex(truth.index).to_numpy() == truth.to_numpy()).mean())


@pytest.mark.parametrize("seed", [2, 3])
def test_on_a_dense_biased_panel_auto_uses_confusion_matrices_and_labels_as_well_as_dawid_skene(seed):
    answers, truth = biased_panel(seed)
    ds = accuracy(CrowdKitDawidSkene(n_iter=100).fit_predict(as_crowdkit(answers)), truth)
    mv = accuracy(CrowdKitMajorityVote().fit_predict(as_crowdkit(answers)), truth)
    model = AutoConsensus().fit(answers)
    assert ds > mv + 0.1  # the shape of the issue: Dawid-Skene far ahead of the vote
    assert model.chosen_ not in (BASELINE, "one_coin", "glad")  # a class-conditional model
    # within one item of 150: where no item is ambiguous, the ambiguous-items models the held-out
    # answers cannot tell from plain confusions move a label either way (seeds 2-9: -1 to +1)
    assert accuracy(model.labels_, truth) >= ds - 1 / len(truth)


def test_with_many_classes_and_private_swaps_auto_labels_as_well_as_dawid_skene():
    answers, truth = swapped_classes(0)
    ds = accuracy(CrowdKitDawidSkene(n_iter=100).fit_predict(as_crowdkit(answers)), truth)
    model = AutoConsensus().fit(answers)
    assert "confusion_" in model.chosen_  # full confusion matrices (on clear items or all)
    assert accuracy(model.labels_, truth) >= ds - 0.005


@pytest.mark.parametrize("seed", [2, 3])
def test_when_workers_are_equally_good_auto_falls_back_to_the_vote(seed):
    answers, truth = equal_workers(seed)
    model = AutoConsensus().fit(answers)
    assert model.chosen_ == BASELINE
    assert model.weights_[BASELINE] > 0.8  # the stack leaves the richer models a sliver at most
    mv = accuracy(CrowdKitMajorityVote().fit_predict(as_crowdkit(answers)), truth)
    assert accuracy(model.labels_, truth) >= mv - 0.005
    assert model.choice_.gain["confusion_1"] < 0  # it predicts held-out answers worse than the vote


def test_the_vote_model_labels_as_the_vote_and_gives_ties_to_the_most_answered_class():
    answers, _ = equal_workers(4, k=4)
    votes = MajorityVote().fit(answers)
    codes = pd.factorize(answers["item_id"])[0], pd.factorize(answers["annotator_id"])[0]
    classes = np.sort(answers["label"].unique())
    label = np.searchsorted(classes, answers["label"].to_numpy())
    fit = fit_vote_model(codes[0], codes[1], label, votes.encoded_.n_items,
                         votes.encoded_.n_annotators, len(classes))
    shares = votes.probas_t_
    top = np.sort(shares, axis=0)
    clear = top[-1] > top[-2]
    assert (fit.probas_t.argmax(axis=0)[clear] == shares.argmax(axis=0)[clear]).all()
    most_answered = np.bincount(label).argmax()
    tied_with_it = ~clear & (shares[most_answered] == top[-1])
    assert tied_with_it.any()
    assert (fit.probas_t.argmax(axis=0)[tied_with_it] == most_answered).all()
    assert 0.6 < fit.accuracy[0] < 0.8  # the workers' accuracy, 0.7


def test_a_latent_class_the_crowd_does_not_answer_is_not_informative():
    class Fitted:  # a fit that named a cluster of behaviour class 2: its items are answered 0 or 1
        priors = np.array([0.4, 0.45, 0.15])
        confusion = np.array([[[0.9, 0.1, 0.5], [0.1, 0.9, 0.45], [0.0, 0.0, 0.05]]] * 3)

    assert not informative(Fitted(), 3)
    Fitted.confusion = np.array([[[0.9, 0.1, 0.2], [0.05, 0.8, 0.2], [0.05, 0.1, 0.6]]] * 3)
    assert informative(Fitted(), 3)


def test_mace_catches_workers_who_always_answer_the_same_class_as_crowd_kits_mace_does():
    rng = np.random.default_rng(5)
    n_items, n_workers, k = 400, 15, 4
    truth = rng.integers(0, k, n_items)
    acc = rng.uniform(0.6, 0.9, n_workers)
    confusion = np.broadcast_to(((1 - acc) / (k - 1))[:, None, None], (n_workers, k, k)).copy()
    confusion[:, np.arange(k), np.arange(k)] = acc[:, None]
    confusion[:5] = 0.0
    confusion[:5, 0, :] = 1.0  # five workers always answer class 0
    item = np.repeat(np.arange(n_items), 6)
    worker = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :6].ravel()
    answers, truth = frame(item, worker, draw(rng, confusion, truth, item, worker), truth)
    ours = MACE().fit(answers)
    theirs = CrowdKitMACE(n_restarts=1, n_iter=50, random_state=0).fit_predict(as_crowdkit(answers))
    assert set(ours.skills_.nsmallest(5).index) == set(range(5))
    assert accuracy(ours.labels_, truth) >= accuracy(theirs, truth) - 0.01


def test_glad_labels_hard_items_as_well_as_crowd_kits_glad():
    rng = np.random.default_rng(6)
    n_items, n_workers, k = 300, 12, 3
    truth = rng.integers(0, k, n_items)
    ability = rng.uniform(0.3, 2.5, n_workers)
    easiness = np.exp(rng.normal(0, 1, n_items))
    item = np.repeat(np.arange(n_items), 5)
    worker = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :5].ravel()
    right = rng.random(len(item)) < 1 / (1 + np.exp(-ability[worker] * easiness[item]))
    label = np.where(right, truth[item], (truth[item] + rng.integers(1, k, len(item))) % k)
    answers, truth = frame(item, worker, label, truth)
    ours = GLAD().fit(answers)
    theirs = CrowdKitGLAD(n_iter=50).fit_predict(as_crowdkit(answers))
    assert (ours.labels_ == theirs.reindex(ours.labels_.index)).mean() > 0.95
    assert accuracy(ours.labels_, truth) >= accuracy(theirs, truth) - 0.01
    assert ours.skills_.rank().corr(pd.Series(ability).rank()) > 0.8


def test_stacking_weights_maximise_the_held_out_likelihood_of_the_mixture_as_scipy_finds_it():
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    # three candidates, each best on a different part of 3,000 answers, plus a poor one
    log_lik = np.log(rng.uniform(0.05, 0.9, (4, 3000)))
    for c in range(3):
        log_lik[c, c * 1000:(c + 1) * 1000] += 0.5
    log_lik = np.minimum(log_lik, 0.0)
    log_lik[3] -= 1.0

    def objective(w):
        return -np.log(np.maximum(np.exp(log_lik).T @ w, 1e-300)).mean()

    ours = stacking_weights(log_lik)
    theirs = minimize(objective, np.full(4, 0.25), method="SLSQP", bounds=[(0, 1)] * 4,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}]).x
    assert ours.sum() == pytest.approx(1.0) and (ours >= 0).all()
    assert objective(ours) <= objective(theirs) + 1e-5
    assert ours[3] < 0.01 and ours[:3].min() > 0.2  # the three share it, the poor one gets none


def test_a_candidate_that_predicts_every_held_out_answer_better_takes_all_the_weight():
    log_lik = np.log(np.array([[0.5, 0.6, 0.4, 0.7], [0.3, 0.2, 0.35, 0.5]]))
    assert stacking_weights(log_lik)[0] > 0.99
