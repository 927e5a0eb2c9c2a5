"""Dawid & Skene (1979): a full confusion matrix per annotator, fitted by EM, vectorized.

Each EM iteration is two sparse products over the (item × annotator·label) count matrix, laid out
classes-major so the per-item softmax runs over contiguous rows, in log space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annotation_pipeline.consensus.encoding import _EPS, _Aggregator, _softmax_columns, confusion_frame, encode_answers


class DawidSkene(_Aggregator):
    """Dawid & Skene (1979): a full confusion matrix per annotator, fitted by EM.

    Initialized from majority vote, as crowd-kit. Each iteration is two sparse products over the
    (item × annotator·label) count matrix, laid out classes-major so the per-item softmax runs
    over contiguous rows. ``smoothing`` adds pseudo-counts to every confusion cell (a Dirichlet
    prior) so an annotator seen a few times does not get hard zeros; gold items have their
    posterior clamped to the known answer in every E-step (they calibrate the confusion
    matrices). Stops when the mean log-likelihood per answer improves by less than ``tol``.
    """

    method = "ds"

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.01):
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> DawidSkene:
        enc = encode_answers(answers, gold)
        k, n_ann, n_items = enc.n_classes, enc.n_annotators, enc.n_items
        n_answers = len(enc.item_codes)
        pair_code = enc.annotator_codes * k + enc.label_codes
        # counts[item, annotator·K + observed label]; duplicates add up
        counts = sp.csr_matrix((np.ones(n_answers), (enc.item_codes, pair_code)),
                               shape=(n_items, n_ann * k))
        counts_t = counts.T.tocsr()
        gold_item, gold_label = enc.gold_codes(gold)

        def clamp(probas_t: np.ndarray) -> np.ndarray:
            if len(gold_item):
                probas_t[:, gold_item] = 0.0
                probas_t[gold_label, gold_item] = 1.0
            return probas_t

        votes = enc.vote_counts()
        probas_t = clamp(votes / np.maximum(votes.sum(axis=0), 1.0))
        log_lik_history: list[float] = []
        errors = self._m_step(counts_t, probas_t, n_ann, k)
        priors = probas_t.mean(axis=1)
        for _ in range(self.n_iter):
            log_errors = np.log(errors).reshape(n_ann * k, k)  # rows: annotator·K + observed
            log_scores_t = np.asarray(counts @ log_errors).T + np.log(np.maximum(priors, _EPS))[:, None]
            probas_t, log_norm = _softmax_columns(np.ascontiguousarray(log_scores_t))
            probas_t = clamp(probas_t)
            log_lik_history.append(float(log_norm.sum() / max(n_answers, 1)))
            priors = probas_t.mean(axis=1)
            errors = self._m_step(counts_t, probas_t, n_ann, k)
            if len(log_lik_history) > 1 and log_lik_history[-1] - log_lik_history[-2] < self.tol:
                break
        self.loss_history_ = log_lik_history
        self.n_iter_ = len(log_lik_history)
        self.priors_ = pd.Series(priors, index=enc.classes, name="prior")
        self.confusion_ = errors  # (annotator, observed, true): P(observed | true)
        # Accuracy implied by the confusion matrix: P(observed == true) under the class prior.
        accuracy = np.einsum("acc,c->a", errors, priors)
        self.skills_ = pd.Series(accuracy, index=enc.annotators, name="accuracy")
        self._set_outputs(enc, probas_t)
        return self

    def _m_step(self, counts_t: sp.csr_matrix, probas_t: np.ndarray, n_ann: int,
                k: int) -> np.ndarray:
        # expected[annotator·K + observed, true] = Σ_items counts · P(true | item)
        expected = np.asarray(counts_t @ probas_t.T).reshape(n_ann, k, k) + self.smoothing
        expected = np.maximum(expected, _EPS)
        return expected / expected.sum(axis=1, keepdims=True)

    @property
    def errors_(self) -> pd.DataFrame:
        """Confusion matrices in crowd-kit's layout: rows (annotator, observed), columns true."""
        return confusion_frame(self.encoded_, self.confusion_)

