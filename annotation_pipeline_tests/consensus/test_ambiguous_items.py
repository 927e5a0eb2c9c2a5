"""Dawid-Skene with ambiguous items: items that pull everyone to the same wrong class (issue 23)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote

from annotation_pipeline.consensus.ambiguous_items import fit_ambiguous_items_codes, usable
from annotation_pipeline.consensus.auto import AutoConsensus
from annotation_pipeline.consensus.encoding import encode_answers
from annotation_pipeline.consensus.model_choice import CANDIDATES


def lenient_checkers(seed: int, n_items: int = 3000, n_workers: int = 57, share: float = 0.15,
                     slip: float = 0.4):
    """Fact checking, as CrowdScale's: 1 = holds, 0 = does not, 2 = cannot tell (rare). Workers of
    very unequal volume rarely reject what holds, let some of what does not hold pass, call most
    of what cannot be told "does not hold"; a share of the items is ambiguous, and each answer on
    one is, with probability ``slip``, that item's distractor class whoever answers."""
    rng = np.random.default_rng(seed)
    k = 3
    truth = rng.choice(k, n_items, p=[0.33, 0.62, 0.05])
    conf = np.zeros((n_workers, k, k))  # (worker, observed, true)
    reject_true, pass_false = rng.uniform(0.02, 0.12, n_workers), rng.uniform(0.05, 0.35, n_workers)
    conf[:, 0, 1], conf[:, 2, 1], conf[:, 1, 1] = reject_true, 0.005, 0.995 - reject_true
    conf[:, 1, 0], conf[:, 2, 0], conf[:, 0, 0] = pass_false, 0.005, 0.995 - pass_false
    told = rng.uniform(0.02, 0.3, n_workers)
    conf[:, 2, 2], conf[:, 0, 2], conf[:, 1, 2] = told, 0.75 * (1 - told), 0.25 * (1 - told)
    # 5 workers per item, drawn in proportion to a long-tailed activity (Gumbel top-k)
    activity = rng.pareto(1.2, n_workers) + 0.05
    keys = np.log(activity / activity.sum())[None, :] - np.log(-np.log(rng.random((n_items, n_workers))))
    worker = np.argsort(-keys, axis=1)[:, :5].ravel()
    item = np.repeat(np.arange(n_items), 5)
    cum = conf[worker, :, truth[item]].cumsum(axis=1)
    label = (rng.random(len(item))[:, None] > cum).sum(axis=1).clip(0, k - 1)
    distractor = (truth + rng.integers(1, k, n_items)) % k
    slips = (rng.random(n_items) < share)[item] & (rng.random(len(item)) < slip)
    label = np.where(slips, distractor[item], label)
    answers = pd.DataFrame({"item_id": item, "annotator_id": worker, "label": label})
    return answers, pd.Series(truth)


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.reindex(truth.index).to_numpy() == truth.to_numpy()).mean())


def _fit(answers, **options):
    enc = encode_answers(answers)
    fit = fit_ambiguous_items_codes(enc.item_codes, enc.annotator_codes, enc.label_codes,
                                    enc.n_items, enc.n_annotators, enc.n_classes, **options)
    labels = pd.Series(np.asarray(enc.classes)[fit.probas_t.argmax(axis=0)], index=enc.items)
    return enc, fit, labels


@pytest.mark.parametrize("annotators", ["confusion", "mace"])
def test_it_finds_the_share_of_ambiguous_items_and_the_slip_it_was_drawn_with(annotators):
    answers, truth = lenient_checkers(0)
    _, fit, _ = _fit(answers, annotators=annotators)
    assert fit.ambiguous_share == pytest.approx(0.15, abs=0.05)
    assert fit.slip == pytest.approx(0.4, abs=0.08)
    assert np.allclose(fit.probas_t.sum(axis=0), 1.0) and np.allclose(fit.states_t.sum(axis=0), 1.0)


def test_where_dawid_skene_gives_split_items_to_the_minority_auto_labels_above_vote_and_ds():
    answers, truth = lenient_checkers(1)
    crowdkit = answers.rename(columns={"item_id": "task", "annotator_id": "worker"})
    mv = accuracy(CrowdKitMajorityVote().fit_predict(crowdkit), truth)
    ds = accuracy(CrowdKitDawidSkene(n_iter=100).fit_predict(crowdkit), truth)
    assert mv > ds  # the shape of CrowdScale fact evaluation: the vote beats Dawid-Skene
    model = AutoConsensus().fit(answers)
    assert model.chosen_.startswith("ambiguous_")
    assert accuracy(model.labels_, truth) >= mv + 0.005


def test_answer_likelihood_is_a_distribution_over_the_answers_for_every_true_class():
    answers, _ = lenient_checkers(2, n_items=400)
    enc, fit, _ = _fit(answers)
    items = np.repeat(np.arange(enc.n_items), 2)
    annotator = np.tile([0, 1], enc.n_items)
    total = sum(fit.answer_likelihood(items, annotator, np.full(len(items), lab))
                for lab in range(enc.n_classes))
    assert np.allclose(total, 1.0)


def test_gold_items_keep_their_known_class():
    answers, truth = lenient_checkers(3, n_items=600)
    enc = encode_answers(answers)
    gold_item = np.arange(50)
    gold_label = (truth.to_numpy()[:50] + 1) % 3  # deliberately another class: the clamp must win
    fit = fit_ambiguous_items_codes(enc.item_codes, enc.annotator_codes, enc.label_codes,
                                    enc.n_items, enc.n_annotators, enc.n_classes,
                                    gold_item=gold_item, gold_label=gold_label)
    assert (fit.probas_t[:, gold_item].argmax(axis=0) == gold_label).all()
    assert np.allclose(fit.probas_t[gold_label, gold_item], 1.0)


def test_it_is_a_candidate_only_where_its_k_squared_states_are_affordable():
    assert usable(1000, 3) and usable(1000, 10)
    assert not usable(1000, 11) and not usable(1000, 1) and not usable(10_000_000, 3)
    many = pd.DataFrame({"item_id": np.repeat(np.arange(60), 3), "annotator_id": np.tile([0, 1, 2], 60),
                         "label": np.arange(180) % 12})
    model = AutoConsensus().fit(many)
    assert not any(name.startswith("ambiguous_") for name in model.choice_.log_lik)
    assert {"ambiguous_mace", "ambiguous_confusion_5"} <= set(CANDIDATES)
