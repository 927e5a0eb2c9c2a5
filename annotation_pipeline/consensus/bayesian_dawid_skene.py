"""Dawid-Skene with hierarchical priors: degrades gracefully from full confusion matrices to a vote.

Plain Dawid-Skene estimates K·(K-1) free parameters per annotator. An annotator with 16 answers
over 10 classes cannot support that, and the fitted matrices are noise; majority vote, at the
other extreme, assumes every annotator is equally good. This model sits between the two with two
levels of shrinkage (maximum a posteriori EM, so it stays as fast as plain Dawid-Skene):

- each annotator's accuracy ``a_w`` is pulled towards the crowd's accuracy by ``skill_strength``
  pseudo-answers (a Beta prior): a thin annotator is trusted like the average annotator until
  their answers say otherwise;
- each annotator's confusion matrix is pulled towards their *one-coin* matrix (``a_w`` on the
  diagonal, ``1 - a_w`` spread over the other classes in the crowd's pooled pattern of mistakes)
  by ``coin_strength`` pseudo-answers per true class (a Dirichlet prior).

``coin_strength=inf`` gives a one-coin model (one accuracy per annotator, pooled error pattern),
and ``skill_strength=inf`` on top gives one shared accuracy: a vote weighted by class priors.
``coin_strength`` near 0 gives plain Dawid-Skene. ``auto`` picks among these by held-out answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annotation_pipeline.consensus.encoding import (
    _EPS,
    EncodedAnswers,
    _Aggregator,
    _softmax_columns,
    confusion_frame,
    encode_answers,
)


@dataclass
class EMFit:
    """Fitted state of one EM run on integer codes."""

    probas_t: np.ndarray    # (K, n_items) posterior of the true class
    confusion: np.ndarray   # (n_annotators, K observed, K true): P(observed | true)
    priors: np.ndarray      # (K,) class prior
    accuracy: np.ndarray    # (n_annotators,) P(observed == true) under the class prior
    log_lik: list[float]    # mean log-likelihood per answer, per iteration

    def answer_likelihood(self, item: np.ndarray, annotator: np.ndarray,
                          label: np.ndarray) -> np.ndarray:
        """(n, K true): P(this annotator answers this label | true class), one row per answer."""
        return self.confusion[annotator, label, :]


def count_matrix(item_codes: np.ndarray, annotator_codes: np.ndarray, label_codes: np.ndarray,
                 n_items: int, n_annotators: int, k: int) -> sp.csr_matrix:
    """counts[item, annotator·K + observed label]; duplicate answers add up."""
    return sp.csr_matrix((np.ones(len(item_codes)), (item_codes, annotator_codes * k + label_codes)),
                         shape=(n_items, n_annotators * k))


def votes_from_counts(counts: sp.csr_matrix, k: int) -> np.ndarray:
    """(K, n_items) votes[c, item] = Σ_annotators counts[item, annotator·K + c]."""
    n_ann = counts.shape[1] // k
    label_of_column = sp.csr_matrix(
        (np.ones(n_ann * k), (np.arange(n_ann * k), np.tile(np.arange(k), n_ann))),
        shape=(n_ann * k, k))
    return np.ascontiguousarray((counts @ label_of_column).toarray().T)


def fit_em(counts: sp.csr_matrix, k: int, *, coin_strength: float, skill_strength: float,
           n_iter: int = 100, tol: float = 1e-5, gold_item: np.ndarray | None = None,
           gold_label: np.ndarray | None = None, class_prior_strength: float = 1.0) -> EMFit:
    """MAP-EM of the hierarchical model on a count matrix (see the module docstring).

    Starts from majority vote. Gold items have their posterior clamped to the known class.
    """
    def m_step(counts_t: sp.csr_matrix, probas_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _m_step(counts_t, probas_t, counts.shape[1] // k, k, coin_strength, skill_strength)

    return run_em(counts, k, m_step, n_iter=n_iter, tol=tol, gold_item=gold_item,
                  gold_label=gold_label, class_prior_strength=class_prior_strength)


def run_em(counts: sp.csr_matrix, k: int, m_step, *, n_iter: int = 100, tol: float = 1e-5,
           gold_item: np.ndarray | None = None, gold_label: np.ndarray | None = None,
           class_prior_strength: float = 1.0) -> EMFit:
    """EM for any model whose answers follow a confusion matrix per annotator.

    ``m_step(counts_t, probas_t) -> (confusion (n_ann, K obs, K true), accuracy)`` is the only
    model-specific part (Dawid-Skene and its shrunk forms here, MACE in ``mace``). Starts from
    majority vote; gold items have their posterior clamped to the known class.
    """
    n_ann = counts.shape[1] // k
    counts_t = counts.T.tocsr()
    n_answers = max(float(counts.sum()), 1.0)
    gold_item = np.empty(0, np.int64) if gold_item is None else gold_item
    gold_label = np.empty(0, np.int64) if gold_label is None else gold_label

    def clamp(probas_t: np.ndarray) -> np.ndarray:
        if len(gold_item):
            probas_t[:, gold_item] = 0.0
            probas_t[gold_label, gold_item] = 1.0
        return probas_t

    votes = votes_from_counts(counts, k)
    probas_t = clamp(votes / np.maximum(votes.sum(axis=0), 1.0))
    answered = votes.sum(axis=0) > 0
    history: list[float] = []
    for _ in range(n_iter):
        confusion, accuracy = m_step(counts_t, probas_t)
        priors = _class_prior(probas_t[:, answered], class_prior_strength)
        log_conf = np.log(confusion).reshape(n_ann * k, k)
        log_scores_t = np.asarray(counts @ log_conf).T + np.log(priors)[:, None]
        probas_t, log_norm = _softmax_columns(np.ascontiguousarray(log_scores_t))
        probas_t = clamp(probas_t)
        history.append(float(log_norm[answered].sum() / n_answers))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
    confusion, accuracy = m_step(counts_t, probas_t)
    priors = _class_prior(probas_t[:, answered], class_prior_strength)
    accuracy = np.einsum("acc,c->a", confusion, priors)
    return EMFit(probas_t=probas_t, confusion=confusion, priors=priors, accuracy=accuracy,
                 log_lik=history)


def _class_prior(probas_t: np.ndarray, strength: float) -> np.ndarray:
    k = probas_t.shape[0]
    prior = probas_t.sum(axis=1) + strength
    return prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)


def _m_step(counts_t: sp.csr_matrix, probas_t: np.ndarray, n_ann: int, k: int,
            coin_strength: float, skill_strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrices (n_ann, K observed, K true) and each annotator's shrunk accuracy."""
    # expected[annotator, observed, true] = Σ_items counts · P(true | item)
    expected = np.asarray(counts_t @ probas_t.T).reshape(n_ann, k, k)
    return shrunk_confusion(expected, coin_strength, skill_strength)


def shrunk_confusion(expected: np.ndarray, coin_strength: float,
                     skill_strength: float) -> tuple[np.ndarray, np.ndarray]:
    """``_m_step`` from expected answer counts (n_ann, K observed, K true): the shrunk confusions."""
    k = expected.shape[1]
    n_ann = expected.shape[0]
    diagonal = np.einsum("acc->a", expected)
    total = expected.sum(axis=(1, 2))
    crowd_accuracy = (diagonal.sum() + 1.0) / (total.sum() + 2.0)
    if math.isinf(skill_strength):
        accuracy = np.full(n_ann, crowd_accuracy)
    else:
        accuracy = (diagonal + skill_strength * crowd_accuracy) / (total + skill_strength)
    # keep a few percent of room on both sides: a perfect record of 5 answers is not certainty
    accuracy = np.clip(accuracy, 1e-3, 1 - 1e-3)
    # pooled pattern of mistakes: P(observed | true, wrong), smoothed towards uniform
    pooled = expected.sum(axis=0)
    np.fill_diagonal(pooled, 0.0)
    pooled += 1.0
    np.fill_diagonal(pooled, 0.0)
    if k > 1:
        pooled /= pooled.sum(axis=0, keepdims=True)
    coin = accuracy[:, None, None] * np.eye(k)[None] + (1 - accuracy)[:, None, None] * pooled[None]
    if math.isinf(coin_strength):
        confusion = coin
    else:
        confusion = expected + coin_strength * coin
        confusion /= np.maximum(confusion.sum(axis=1, keepdims=True), _EPS)
    return np.maximum(confusion, _EPS), accuracy


class BayesianDawidSkene(_Aggregator):
    """Dawid-Skene with a Beta prior on each annotator's accuracy and a Dirichlet prior pulling
    each confusion matrix towards that annotator's one-coin matrix (see the module docstring).

    Fitted state as crowd-kit's ``DawidSkene``: ``probas_``, ``labels_``, ``priors_``,
    ``errors_`` (confusion per annotator), ``skills_`` (accuracy per annotator).
    """

    method = "bds"

    def __init__(self, coin_strength: float = 30.0, skill_strength: float = 5.0,
                 n_iter: int = 100, tol: float = 1e-5, class_prior_strength: float = 1.0):
        self.coin_strength = coin_strength
        self.skill_strength = skill_strength
        self.class_prior_strength = class_prior_strength
        self.n_iter = n_iter
        self.tol = tol

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> BayesianDawidSkene:
        enc = encode_answers(answers, gold)
        return self.fit_encoded(enc, *enc.gold_codes(gold))

    def fit_encoded(self, enc: EncodedAnswers, gold_item: np.ndarray | None = None,
                    gold_label: np.ndarray | None = None) -> BayesianDawidSkene:
        counts = count_matrix(enc.item_codes, enc.annotator_codes, enc.label_codes,
                              enc.n_items, enc.n_annotators, enc.n_classes)
        em = fit_em(counts, enc.n_classes, coin_strength=self.coin_strength,
                    skill_strength=self.skill_strength, n_iter=self.n_iter, tol=self.tol,
                    gold_item=gold_item, gold_label=gold_label,
                    class_prior_strength=self.class_prior_strength)
        self.loss_history_ = em.log_lik
        self.n_iter_ = len(em.log_lik)
        self.priors_ = pd.Series(em.priors, index=enc.classes, name="prior")
        self.confusion_ = em.confusion
        self.skills_ = pd.Series(em.accuracy, index=enc.annotators, name="accuracy")
        self._set_outputs(enc, em.probas_t)
        return self

    @property
    def errors_(self) -> pd.DataFrame:
        """Confusion matrices in crowd-kit's layout: rows (annotator, observed), columns true."""
        return confusion_frame(self.encoded_, self.confusion_)


class OneCoinDawidSkene(BayesianDawidSkene):
    """One accuracy per annotator (mistakes follow the crowd's pooled pattern), Beta-smoothed."""

    method = "ocds"

    def __init__(self, skill_strength: float = 5.0, n_iter: int = 100, tol: float = 1e-5):
        super().__init__(coin_strength=math.inf, skill_strength=skill_strength, n_iter=n_iter,
                         tol=tol)
