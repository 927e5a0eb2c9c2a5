"""Majority vote: the baseline every other aggregator must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.encoding import _Aggregator, encode_answers


class MajorityVote(_Aggregator):
    """Plain vote; confidence = share of the winning label's votes (gold is ignored)."""

    method = "mv"

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> MajorityVote:
        enc = encode_answers(answers, gold)
        counts = enc.vote_counts()
        self._set_outputs(enc, counts / np.maximum(counts.sum(axis=0), 1.0))
        return self



def fit_vote_model(item: np.ndarray, annotator: np.ndarray, label: np.ndarray, n_items: int,
                   n_annotators: int, k: int, gold_item: np.ndarray | None = None,
                   gold_label: np.ndarray | None = None, n_iter: int = 50, tol: float = 1e-6):
    """Majority vote as a probability model: everybody right with one shared accuracy ``a``, a
    wrong answer any other class, classes as common a priori as they are among the answers.

    Its most probable class is the vote's winner (a tie goes to the most answered class), and its
    posterior, softmax(votes · log(a (K−1) / (1 − a)) + log prior), is a confidence with the vote's
    ranking; ``a`` is fitted by EM. It is ``model_choice``'s baseline: a richer
    model must predict held-out answers clearly better than this to be used. (A shared accuracy
    with a learned class prior and pooled pattern of mistakes, the earlier baseline, drifted away
    from the vote's labels by up to 7 points on thin spammy crowds.)
    """
    # imported here: MajorityVote alone stays free of scipy (bayesian_dawid_skene needs it)
    from annotation_pipeline.consensus.bayesian_dawid_skene import EMFit
    from annotation_pipeline.consensus.encoding import _softmax_columns

    votes = np.bincount(label * n_items + item, minlength=k * n_items).reshape(k, n_items).astype(float)
    n_answers = max(len(item), 1)
    gold = (np.empty(0, np.int64), np.empty(0, np.int64)) if gold_item is None else (gold_item, gold_label)
    probas_t = votes / np.maximum(votes.sum(axis=0), 1.0)
    if len(gold[0]):
        probas_t[:, gold[0]] = 0.0
        probas_t[gold[1], gold[0]] = 1.0
    history: list[float] = []
    # class prior = share of answers per class, fixed: it only decides ties and near-ties (as
    # crowd-kit's vote gives a tie to the most answered class). Learned by EM it drifts: the
    # classes that win ties gain prior and win more ties (−2 to −3 points on thin 4-class crowds).
    priors = votes.sum(axis=1) + 1.0
    priors /= priors.sum()
    for _ in range(n_iter):
        a = float(np.clip(((probas_t * votes).sum() + 1.0) / (n_answers + 2.0), 1.0 / max(k, 2) + 1e-3, 1 - 1e-3))
        log_odds = np.log(a * max(k - 1, 1) / (1 - a)) if k > 1 else 0.0
        probas_t, log_norm = _softmax_columns(votes * log_odds + np.log(priors)[:, None])
        if len(gold[0]):
            probas_t[:, gold[0]] = 0.0
            probas_t[gold[1], gold[0]] = 1.0
        history.append(a)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            break
    off = (1 - a) / max(k - 1, 1)
    confusion = np.full((n_annotators, k, k), off) + (a - off) * np.eye(k)
    return EMFit(probas_t=probas_t, confusion=confusion, priors=priors,
                 accuracy=np.full(n_annotators, a), log_lik=history)
