"""GLAD (Whitehill et al. 2009): annotator ability × item easiness, fitted by EM with Newton steps.

P(an answer is right) = σ(α_w·β_i): α_w is the annotator's ability (negative for one who answers
against the truth), β_i = exp(b_i) > 0 the item's easiness; a wrong answer is any other class,
uniformly. It is the one model here in which *items* make mistakes likely, so on a crowd whose
errors concentrate on hard items it does not blame the annotators who met them. Vectorized: every
step is a ``bincount`` over answers (crowd-kit's ``GLAD`` optimizes with scipy per iteration and
needs 445 s on the 217k answers of CrowdScale fact evaluation). Priors α ~ N(1, 1), b ~ N(0, 1)
keep annotators and items with few answers near the average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from annotation_pipeline.consensus.bayesian_dawid_skene import _class_prior
from annotation_pipeline.consensus.encoding import EncodedAnswers, _Aggregator, _softmax_columns, encode_answers

_CLIP = 1e-6


@dataclass
class GLADFit:
    probas_t: np.ndarray  # (K, n_items)
    priors: np.ndarray    # (K,)
    ability: np.ndarray   # (n_annotators,) α
    easiness: np.ndarray  # (n_items,) β = exp(b)
    accuracy: np.ndarray  # (n_annotators,) mean P(right) over the annotator's answers
    log_lik: list[float]
    k: int

    def answer_likelihood(self, item: np.ndarray, annotator: np.ndarray,
                          label: np.ndarray) -> np.ndarray:
        """(n, K true): P(this annotator answers this label on this item | true class)."""
        right = np.clip(expit(self.ability[annotator] * self.easiness[item]), _CLIP, 1 - _CLIP)
        out = np.repeat(((1 - right) / max(self.k - 1, 1))[:, None], self.k, axis=1)
        out[np.arange(len(item)), label] = right
        return out


def fit_glad(item: np.ndarray, annotator: np.ndarray, label: np.ndarray, n_items: int,
             n_annotators: int, k: int, *, n_iter: int = 100, tol: float = 1e-5,
             gold_item: np.ndarray | None = None, gold_label: np.ndarray | None = None,
             ability_prior: tuple[float, float] = (1.0, 1.0), easiness_sd: float = 1.0) -> GLADFit:
    """EM on integer codes: E-step in log space, M-step two Newton steps on α and on b."""
    gold_item = np.empty(0, np.int64) if gold_item is None else gold_item
    gold_label = np.empty(0, np.int64) if gold_label is None else gold_label
    mean_a, var_a = ability_prior[0], ability_prior[1] ** 2
    var_b = easiness_sd ** 2
    n_answers = max(len(item), 1)

    def clamp(probas_t: np.ndarray) -> np.ndarray:
        if len(gold_item):
            probas_t[:, gold_item] = 0.0
            probas_t[gold_label, gold_item] = 1.0
        return probas_t

    cell = label * n_items + item
    votes = np.bincount(cell, minlength=k * n_items).reshape(k, n_items).astype(float)
    answered = votes.sum(axis=0) > 0
    probas_t = clamp(votes / np.maximum(votes.sum(axis=0), 1.0))
    ability, log_easiness = np.full(n_annotators, mean_a), np.zeros(n_items)
    history: list[float] = []
    for _ in range(n_iter):
        right_share = probas_t[label, item]  # P(the answer is the truth)
        for _ in range(2):
            easiness = np.exp(log_easiness)
            x = ability[annotator] * easiness[item]
            p = expit(x)
            residual, weight = right_share - p, p * (1 - p)
            grad = np.bincount(annotator, residual * easiness[item], n_annotators) - (ability - mean_a) / var_a
            hess = np.bincount(annotator, weight * easiness[item] ** 2, n_annotators) + 1 / var_a
            ability = ability + grad / hess
            x = ability[annotator] * easiness[item]
            p = expit(x)
            residual, weight = right_share - p, p * (1 - p)
            grad = np.bincount(item, residual * x, n_items) - log_easiness / var_b
            hess = np.bincount(item, weight * x ** 2, n_items) + 1 / var_b
            log_easiness = np.clip(log_easiness + np.clip(grad / hess, -1.0, 1.0), -5.0, 5.0)
        priors = _class_prior(probas_t[:, answered], 1.0)
        p = np.clip(expit(ability[annotator] * np.exp(log_easiness)[item]), _CLIP, 1 - _CLIP)
        log_wrong = np.log((1 - p) / max(k - 1, 1))
        log_scores_t = (np.bincount(item, log_wrong, n_items)[None, :]
                        + np.bincount(cell, np.log(p) - log_wrong, k * n_items).reshape(k, n_items)
                        + np.log(priors)[:, None])
        probas_t, log_norm = _softmax_columns(log_scores_t)
        probas_t = clamp(probas_t)
        history.append(float(log_norm[answered].sum() / n_answers))
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            break
    easiness = np.exp(log_easiness)
    p = expit(ability[annotator] * easiness[item])
    accuracy = np.bincount(annotator, p, n_annotators) + expit(ability)  # one pseudo-answer at β = 1
    accuracy /= np.bincount(annotator, minlength=n_annotators) + 1.0
    return GLADFit(probas_t=probas_t, priors=_class_prior(probas_t[:, answered], 1.0),
                   ability=ability, easiness=easiness, accuracy=accuracy, log_lik=history, k=k)


class GLAD(_Aggregator):
    """GLAD by EM; fitted state: ``probas_``, ``labels_``, ``skills_``, ``alphas_``, ``betas_``."""

    method = "glad"

    def __init__(self, n_iter: int = 100, tol: float = 1e-5):
        self.n_iter = n_iter
        self.tol = tol

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> GLAD:
        enc = encode_answers(answers, gold)
        return self.fit_encoded(enc, *enc.gold_codes(gold))

    def fit_encoded(self, enc: EncodedAnswers, gold_item: np.ndarray | None = None,
                    gold_label: np.ndarray | None = None) -> GLAD:
        fit = fit_glad(enc.item_codes, enc.annotator_codes, enc.label_codes, enc.n_items,
                       enc.n_annotators, max(enc.n_classes, 1), n_iter=self.n_iter, tol=self.tol,
                       gold_item=gold_item, gold_label=gold_label)
        self.alphas_ = pd.Series(fit.ability, index=enc.annotators, name="alpha")
        self.betas_ = pd.Series(fit.easiness, index=enc.items, name="beta")
        self.priors_ = pd.Series(fit.priors, index=enc.classes, name="prior")
        self.skills_ = pd.Series(fit.accuracy, index=enc.annotators, name="accuracy")
        self._set_outputs(enc, fit.probas_t)
        return self
