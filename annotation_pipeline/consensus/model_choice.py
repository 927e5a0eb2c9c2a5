"""Which crowd model the data supports: held-out likelihood of answers, with a fall back to the vote.

Every candidate is a generative model of one answer given the item's true class: the vote (one
shared accuracy, uniform mistakes and classes: ``majority_vote.fit_vote_model``), one accuracy per
annotator (one-coin), MACE, GLAD, confusion matrices shrunk towards each annotator's one-coin
matrix by a Dirichlet prior of ``coin_strength`` pseudo-answers per class (so an annotator with
few answers keeps little more than an accuracy, one with hundreds gets their own
class-conditional mistakes), and, up to 10 classes, MACE and shrunk confusions with ambiguous
items (``ambiguous_items``: items that pull everyone to the same wrong class, whose split answers
say nothing about the annotators). The answers are split in
``n_folds`` folds (answers, not items: the item stays, with its other answers); each candidate is
fitted on the rest and scores every held-out answer by

    p(answer | other answers) = Σ_z posterior(z | other answers) · P(answer | z, annotator, item),

so a model earns its parameters only by predicting answers it did not see.

The evidence is reported per candidate as its gain over the shared-accuracy model (the vote), summed
per annotator, with the spread of those sums as its standard error (the noise unit is the
annotator: a richer model wins or loses annotator by annotator).

The posterior is not the best candidate's but a *stack* of them (Yao, Vehtari, Simpson and Gelman
2018, stacking of predictive distributions): simplex weights w that maximise

    Σ_answers log Σ_c w_c · p_c(answer | other answers),

the held-out likelihood of the mixture. Picking the best model assumes one candidate is the true
one; on real crowds every annotator model is wrong somewhere, and picking staked everything on
the one whose fit of the answers happened to be best (issue 23: on the eleven public crowds beyond
the development set the pick lost 2.5 points to crowd-kit's best on ZenCrowd and on face
sentiment, where two other models each predict a different part of the answers). Stacking puts
the weight where the held-out answers are predicted, gives all of it to one model when that model
predicts every part better, and to the vote when nothing predicts better than the vote. Only
*informative* candidates (see ``informative``) are stacked; ``members`` are the ones with a
weight of at least ``MIN_WEIGHT``, and ``auto`` averages their posteriors with those weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from annotation_pipeline.consensus import ambiguous_items
from annotation_pipeline.consensus.bayesian_dawid_skene import count_matrix, fit_em
from annotation_pipeline.consensus.glad import fit_glad
from annotation_pipeline.consensus.mace import fit_mace
from annotation_pipeline.consensus.majority_vote import fit_vote_model

BASELINE = "vote"
MIN_WEIGHT = 0.01  # a stacked candidate below this share is left out (renormalised over the rest)


def _dawid_skene(coin: float, skill: float):
    def fit(item, annotator, label, n_items, n_ann, k, gold_item, gold_label):
        counts = count_matrix(item, annotator, label, n_items, n_ann, k)
        return fit_em(counts, k, coin_strength=coin, skill_strength=skill, gold_item=gold_item,
                      gold_label=gold_label)
    return fit


def _mace(item, annotator, label, n_items, n_ann, k, gold_item, gold_label):
    return fit_mace(count_matrix(item, annotator, label, n_items, n_ann, k), k,
                    gold_item=gold_item, gold_label=gold_label)


def _glad(item, annotator, label, n_items, n_ann, k, gold_item, gold_label):
    return fit_glad(item, annotator, label, n_items, n_ann, k, gold_item=gold_item,
                    gold_label=gold_label)


def _ambiguous(annotators: str, coin: float = 30.0):
    def fit(item, annotator, label, n_items, n_ann, k, gold_item, gold_label):
        return ambiguous_items.fit_ambiguous_items_codes(
            item, annotator, label, n_items, n_ann, k, gold_item, gold_label,
            annotators=annotators, coin_strength=coin)
    fit.usable = ambiguous_items.usable
    return fit


# name -> fit(item, annotator, label, n_items, n_annotators, k, gold_item, gold_label), returning
# an object with probas_t, priors, accuracy and answer_likelihood(); simplest first. Confusion
# strengths are Dirichlet pseudo-answers per true class towards the annotator's one-coin matrix:
# 30 keeps little more than an accuracy below a few hundred answers, 1 is nearly plain Dawid-Skene.
CANDIDATES = {
    BASELINE: fit_vote_model,
    "one_coin": _dawid_skene(math.inf, 5.0),
    "glad": _glad,
    "mace": _mace,
    "confusion_30": _dawid_skene(30.0, 5.0),
    "confusion_5": _dawid_skene(5.0, 5.0),
    "confusion_1": _dawid_skene(1.0, 5.0),
    # items that pull everyone to the same wrong class (``ambiguous_items``), with MACE's annotators
    # or confusion matrices; only up to 10 classes (``fit.usable``)
    "ambiguous_mace": _ambiguous("mace"),
    "ambiguous_confusion_5": _ambiguous("confusion", 5.0),
}


def usable_candidates(candidates: dict, n_items: int, k: int) -> dict:
    """The candidates that fit a crowd of this many items and classes (``fit.usable``, default all)."""
    return {name: fit for name, fit in candidates.items()
            if getattr(fit, "usable", lambda n, k: True)(n_items, k)}


@dataclass
class ModelChoice:
    """Outcome of ``choose_model``: the stack's weights and the evidence, per candidate."""

    chosen: str                                                  # the candidate with the most weight
    members: list[str] = field(default_factory=list)            # weight >= MIN_WEIGHT, simplest first
    weights: dict[str, float] = field(default_factory=dict)     # of the members, summing to 1
    gain: dict[str, float] = field(default_factory=dict)        # held-out nats/answer over baseline
    stderr: dict[str, float] = field(default_factory=dict)      # of the gain, by annotator
    informative: dict[str, bool] = field(default_factory=dict)
    log_lik: dict[str, float] = field(default_factory=dict)     # held-out nats/answer

    def table(self) -> pd.DataFrame:
        """One row per candidate, simplest first: the evidence the stack was made on.

        ``gain`` and ``stderr`` are held-out nats per answer over the vote; ``z`` their ratio;
        ``weight`` the candidate's share of the posterior; ``used`` marks the ``members``.
        """
        names = list(self.log_lik) or [self.chosen]
        table = pd.DataFrame({
            "candidate": names,
            "held_out_nats_per_answer": [self.log_lik.get(n, np.nan) for n in names],
            "gain_over_vote": [self.gain.get(n, 0.0) for n in names],
            "stderr": [self.stderr.get(n, 0.0) for n in names],
            "informative": [self.informative.get(n, True) for n in names],
            "weight": [self.weights.get(n, 0.0) for n in names],
            "used": [n in self.members for n in names],
        })
        se = table["stderr"].to_numpy()
        table["z"] = np.divide(table["gain_over_vote"].to_numpy(), se, out=np.zeros(len(table)),
                               where=se > 0)
        return table


def held_out_log_lik(fit, item, annotator, label, n_items, n_ann, k, folds: np.ndarray,
                     gold_item, gold_label) -> tuple[np.ndarray, list]:
    """log p(answer | the other folds) for every answer, and the per-fold fits."""
    out = np.empty(len(item))
    fits = []
    for f in np.unique(folds):
        test = folds == f
        train = ~test
        model = fit(item[train], annotator[train], label[train], n_items, n_ann, k,
                    gold_item, gold_label)
        lik = model.answer_likelihood(item[test], annotator[test], label[test])  # (n, K true)
        p = np.einsum("nk,kn->n", lik, model.probas_t[:, item[test]])
        out[test] = np.log(np.maximum(p, 1e-300))
        fits.append(model)
    return out, fits


def mean_by_annotator(values: np.ndarray, annotator: np.ndarray, n_ann: int) -> tuple[float, float]:
    """Mean of a per-answer quantity and its standard error with the annotator as the unit.

    A richer model wins or loses annotator by annotator, so the answers of one annotator are not
    independent evidence: the error is the spread of the annotators' sums around their share of
    the mean (cluster-robust), with the small-sample factor m / (m - 1) over m annotators.
    """
    n = max(len(values), 1)
    sums = np.bincount(annotator, values, n_ann)
    counts = np.bincount(annotator, minlength=n_ann)
    mean = sums.sum() / n
    m = max(int((counts > 0).sum()), 2)
    return float(mean), float(math.sqrt(m / (m - 1) * ((sums - counts * mean) ** 2).sum()) / n)


def stacking_weights(log_lik: np.ndarray, n_iter: int = 1000, tol: float = 1e-5) -> np.ndarray:
    """Simplex weights maximising Σ_answers log Σ_c w_c · exp(log_lik[c, answer]).

    ``log_lik``: (candidates, answers) held-out log-likelihoods. EM on the mixture weights: each
    step is the mean responsibility of every candidate for every answer, and never lowers the
    objective (which is concave in w). Each answer's column is shifted by its maximum first, which
    leaves the responsibilities as they are and keeps exp() in range.
    """
    p = np.exp(log_lik - log_lik.max(axis=0, keepdims=True))
    weights = np.full(len(p), 1.0 / max(len(p), 1))
    for _ in range(n_iter):
        share = weights[:, None] * p
        share /= share.sum(axis=0, keepdims=True)
        updated = share.mean(axis=1)
        if np.abs(updated - weights).max() < tol:
            return updated
        weights = updated
    return weights


def informative(model, k: int, min_share: float = 0.01) -> bool:
    """Is the fitted crowd, as a whole, more likely to give each class's true label than any other?

    Latent classes are only *classes* if, for every class the model puts real mass on, the answers
    on its items are more often that class than any other; otherwise the model has found a cluster
    of annotator behaviour and named it after a class (on CrowdScale fact evaluation full
    Dawid-Skene gives 13 % of the items a class that 0.1 % of the answers use).
    """
    if k < 2:
        return True
    if not hasattr(model, "confusion"):  # GLAD: wrong answers are uniform, so accuracy decides
        return bool(np.mean(model.accuracy) > 1.0 / k)
    pooled = model.confusion.mean(axis=0)  # the average annotator's P(observed | true)
    massive = model.priors >= min_share
    diagonal = np.diag(pooled)
    off = pooled - np.diag(diagonal)
    return bool(np.all(diagonal[massive] > off.max(axis=0)[massive]))


def choose_model(item: np.ndarray, annotator: np.ndarray, label: np.ndarray, n_items: int,
                 n_ann: int, k: int, *, gold_item=None, gold_label=None, n_folds: int = 3,
                 candidates: dict | None = None, seed: int = 0,
                 max_answers: int = 100_000) -> ModelChoice:
    """Stack the candidates on their held-out answers (see the module docstring).

    Above ``max_answers`` the stack is fitted on the answers of a random subset of items (each
    item with all its answers) of about that size: at 100k answers the standard errors are
    already a few millinats, and the n_folds × candidates fits stay a few seconds.
    """
    candidates = usable_candidates(CANDIDATES if candidates is None else candidates, n_items, k)
    if k < 2 or len(item) < 2 * n_folds:
        return ModelChoice(BASELINE, members=[BASELINE], weights={BASELINE: 1.0})
    rng = np.random.default_rng(seed)
    if len(item) > max_answers:
        keep_item = rng.random(n_items) < max_answers / len(item)
        keep = keep_item[item]
        new_code = np.cumsum(keep_item) - 1
        if gold_item is not None and len(gold_item):
            gold_keep = keep_item[gold_item]
            gold_item, gold_label = new_code[gold_item[gold_keep]], gold_label[gold_keep]
        item, annotator, label = new_code[item[keep]], annotator[keep], label[keep]
        n_items = int(keep_item.sum())
    folds = rng.integers(0, n_folds, len(item))
    log_lik, ok = {}, {}
    for name, fit in candidates.items():
        log_lik[name], fits = held_out_log_lik(fit, item, annotator, label, n_items, n_ann, k,
                                               folds, gold_item, gold_label)
        # the vote is always stacked: it is the fall back, and the stack is never empty
        ok[name] = name == BASELINE or all(informative(m, k) for m in fits)
    base = log_lik[BASELINE]
    gain, stderr = {}, {}
    for name, ll in log_lik.items():
        gain[name], stderr[name] = mean_by_annotator(ll - base, annotator, n_ann)
    stacked = [name for name in candidates if ok[name]]
    weights = dict(zip(stacked, stacking_weights(np.stack([log_lik[name] for name in stacked]))))
    members = [name for name in stacked if weights[name] >= MIN_WEIGHT]
    total = sum(weights[name] for name in members)
    weights = {name: float(weights[name] / total) for name in members}
    return ModelChoice(max(members, key=weights.get), members=members, weights=weights, gain=gain,
                       stderr=stderr, informative=ok,
                       log_lik={name: float(ll.mean()) for name, ll in log_lik.items()})
