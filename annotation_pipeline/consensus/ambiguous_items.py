"""Dawid-Skene with ambiguous items: mistakes that an item, not an annotator, makes.

Every annotator model before this one assumes answers are independent given the true class. Real
items break that: a fact that is nearly true, a photo between two classes, pulls *everyone*
towards the same wrong answer. Dawid-Skene then explains the split answers by the annotators
(those who answered the minority class must be reliable, since they rarely do) and relabels the
item to the minority class; on CrowdScale fact evaluation that is 1,770 items, and the vote is
right where the two differ (benchmarks/results_consensus.md).

Here an item is clear (probability 1 − ρ), and its answers follow each annotator's confusion
matrix, or ambiguous (ρ), with one distractor class d ≠ z drawn from a pooled D[d | z]: each
answer on it is the distractor with probability s (a slip anyone makes), else from the
annotator's confusion matrix (s per true class: a false statement may mislead more often than a
true one). The latent state of an item is z, or the pair (z, d): K² states,
scored in one sparse product of the answer counts with a (annotators·K, K²) table of
log-likelihoods; EM learns the confusions (shrunk towards each annotator's one-coin matrix as in
``bayesian_dawid_skene``), ρ, s, D and the class prior. On an ambiguous item the slips are not
charged to the annotators who made them, so split answers stay with the majority unless the
annotators really are that different. ``model_choice`` decides on held-out answers whether a crowd
has such items (the model has K² + 1 more parameters than the annotator model it extends).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from annotation_pipeline.consensus.bayesian_dawid_skene import (
    _class_prior,
    count_matrix,
    shrunk_confusion,
    votes_from_counts,
)
from annotation_pipeline.consensus.encoding import _EPS, _softmax_columns
from annotation_pipeline.consensus.mace import mace_m_step

# K² states per item. Above 10 classes the fits take seconds and, on the generated many-class crowds,
# gain nothing over the annotator models alone (results_consensus.md); above MAX_STATE_CELLS
# (items × K² posteriors, 8 bytes each) the memory is not worth it. ``model_choice`` then leaves the
# candidate out (``usable``).
MAX_CLASSES = 10
MAX_STATE_CELLS = 30_000_000


def usable(n_items: int, k: int) -> bool:
    """Whether the model is fitted at all on this many items and classes (see the constants)."""
    return 2 <= k <= MAX_CLASSES and n_items * k * k <= MAX_STATE_CELLS


@dataclass
class AmbiguousItemsFit:
    """Fitted state; ``probas_t`` / ``confusion`` / ``priors`` / ``accuracy`` as ``EMFit``."""

    probas_t: np.ndarray      # (K, n_items) P(true class | answers)
    states_t: np.ndarray      # (K², n_items) P(state | answers): K clear, then (z, d) pairs
    confusion: np.ndarray     # (n_annotators, K observed, K true), on clear answers
    priors: np.ndarray        # (K,)
    accuracy: np.ndarray      # (n_annotators,)
    ambiguous_share: float    # ρ
    slip: float               # s, averaged over the ambiguous items
    slip_by_class: np.ndarray  # (K,) s of the ambiguous items of each true class
    distractor: np.ndarray    # (K distractor, K true) D[d | z]
    log_lik: list[float]

    def state_likelihood(self, annotator: np.ndarray, label: np.ndarray) -> np.ndarray:
        """(n, K²): P(this answer | the item's state), one row per answer: the annotator's
        confusion on a clear item, the distractor with probability s on an ambiguous one."""
        true_of, distractor_of = _states(self.probas_t.shape[0])
        conf = self.confusion[annotator, label, :][:, true_of]          # (n, states)
        is_distractor = (label[:, None] == distractor_of[None, :])
        slip = np.asarray(self.slip_by_class)[true_of][None, :]
        return np.where(distractor_of[None, :] < 0, conf, (1 - slip) * conf + slip * is_distractor)

    def answer_likelihood(self, item: np.ndarray, annotator: np.ndarray,
                          label: np.ndarray) -> np.ndarray:
        """(n, K true): P(this answer | true class, the item's other answers), one row per answer."""
        k = self.probas_t.shape[0]
        true_of, _ = _states(k)
        joint = self.state_likelihood(annotator, label) * self.states_t[:, item].T  # (n, states)
        by_class = joint @ np.eye(k)[true_of]                             # (n, K)
        return by_class / np.maximum(self.probas_t[:, item].T, 1e-300)


def _states(k: int) -> tuple[np.ndarray, np.ndarray]:
    """True class and distractor (−1 = clear) of each of the K² states."""
    pairs = [(z, d) for z in range(k) for d in range(k) if d != z]
    true_of = np.array(list(range(k)) + [z for z, _ in pairs], dtype=np.int64)
    distractor_of = np.array([-1] * k + [d for _, d in pairs], dtype=np.int64)
    return true_of, distractor_of


def fit_ambiguous_items(counts: sp.csr_matrix, k: int, *, annotators: str = "confusion",
                        coin_strength: float = 30.0, skill_strength: float = 5.0,
                        n_iter: int = 100, tol: float = 1e-5,
                        gold_item: np.ndarray | None = None,
                        gold_label: np.ndarray | None = None) -> AmbiguousItemsFit:
    """MAP-EM of the model on a count matrix (``count_matrix``); starts from majority vote.

    ``annotators``: how an annotator answers a clear item (and the non-slip answers on an
    ambiguous one): ``confusion`` = Dawid-Skene shrunk by ``coin_strength`` pseudo-answers per
    class towards the annotator's one-coin matrix, ``mace`` = MACE's competence and spam.
    """
    n_ann = counts.shape[1] // k
    if annotators == "mace":
        annotator_step = mace_m_step(n_ann, k)
    else:
        def annotator_step(expected):
            return shrunk_confusion(expected, coin_strength, skill_strength)
    true_of, distractor_of = _states(k)
    ambiguous = distractor_of >= 0
    to_class = np.eye(k)[true_of]                         # (states, K)
    counts_t = counts.T.tocsr()
    label_of_column = np.tile(np.arange(k), n_ann)        # column annotator·K + label -> label
    votes = votes_from_counts(counts, k)
    answered = votes.sum(axis=0) > 0
    n_answers = max(float(counts.sum()), 1.0)
    gold_item = np.empty(0, np.int64) if gold_item is None else gold_item
    gold_label = np.empty(0, np.int64) if gold_label is None else gold_label

    def clamp(states_t: np.ndarray) -> np.ndarray:
        if len(gold_item):
            keep = true_of[:, None] == gold_label[None, :]
            block = states_t[:, gold_item] * keep
            states_t[:, gold_item] = block / np.maximum(block.sum(axis=0, keepdims=True), 1e-300)
        return states_t

    share = votes / np.maximum(votes.sum(axis=0), 1.0)
    states_t = np.where(ambiguous[:, None], 0.1 / max(k - 1, 1), 0.9) * share[true_of]
    states_t = clamp(states_t / np.maximum(states_t.sum(axis=0, keepdims=True), 1e-300))
    slip, rho = np.full(k, 0.3), 0.1
    distractor = np.full((k, k), 1.0 / max(k - 1, 1)) * (1 - np.eye(k))
    slip_part = np.zeros((n_ann * k, len(true_of)))       # P(slip | answer, state), first pass none

    def m_step(states_t, slip_part, start):
        """Annotators from the answers not explained as slips; then ρ, s, D and the prior
        (``start`` = the current ρ, s, D, kept on the first pass: no slip responsibilities yet)."""
        expected = np.asarray(counts_t @ states_t.T)      # (annotators·K, states) answers per state
        confusion, _ = annotator_step(((expected * (1 - slip_part)) @ to_class).reshape(n_ann, k, k))
        if start is not None:
            return (confusion, *start, _class_prior(states_t[:, answered].T.dot(to_class).T, 1.0))
        return (confusion, *_ambiguity_step(expected, slip_part, states_t, answered, ambiguous,
                                            true_of, distractor_of, to_class, k))

    history: list[float] = []
    for iteration in range(n_iter):
        confusion, slip, rho, distractor, priors = m_step(
            states_t, slip_part, (slip, rho, distractor) if iteration == 0 else None)
        # E step: one sparse product scores every state of every item
        conf_cols = confusion.reshape(n_ann * k, k)[:, true_of]           # (annotators·K, states)
        hits = label_of_column[:, None] == distractor_of[None, :]
        slip_of = slip[true_of][None, :]
        lik = np.where(ambiguous[None, :], (1 - slip_of) * conf_cols + slip_of * hits, conf_cols)
        slip_part = np.where(ambiguous[None, :], slip_of * hits / np.maximum(lik, _EPS), 0.0)
        state_prior = np.where(ambiguous, rho * distractor[np.maximum(distractor_of, 0), true_of],
                               1 - rho) * priors[true_of]
        scores = np.asarray(counts @ np.log(np.maximum(lik, _EPS))).T + np.log(state_prior)[:, None]
        states_t, log_norm = _softmax_columns(np.ascontiguousarray(scores))
        states_t = clamp(states_t)
        history.append(float(log_norm[answered].sum() / n_answers))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
    confusion, slip, rho, distractor, priors = m_step(
        states_t, slip_part, None if history else (slip, rho, distractor))
    probas_t = to_class.T @ states_t
    ambiguous_mass = to_class[ambiguous].T @ states_t[ambiguous][:, answered].sum(axis=1)
    accuracy = np.einsum("acc,c->a", confusion, priors)
    return AmbiguousItemsFit(probas_t=probas_t, states_t=states_t, confusion=confusion,
                             priors=priors, accuracy=accuracy, ambiguous_share=rho,
                             slip=float(slip @ ambiguous_mass / max(ambiguous_mass.sum(), _EPS)),
                             slip_by_class=slip,
                             distractor=distractor, log_lik=history)


def _ambiguity_step(expected, slip_part, states_t, answered, ambiguous, true_of, distractor_of,
                    to_class, k):
    """ρ, s, D and the class prior from the posteriors and the slip responsibilities."""
    # s per true class: slips / answers on the ambiguous states of that class (+1 / +2 smoothing)
    slips = ((expected * slip_part) * ambiguous).sum(axis=0) @ to_class
    on_ambiguous = (expected * ambiguous).sum(axis=0) @ to_class
    slip = np.clip((slips + 1.0) / (on_ambiguous + 2.0), 1e-3, 0.9)
    mass = states_t[:, answered].sum(axis=1)
    rho = float((mass[ambiguous].sum() + 1.0) / (answered.sum() + 2.0))
    pair_mass = np.zeros((k, k))
    np.add.at(pair_mass, (distractor_of[ambiguous], true_of[ambiguous]), mass[ambiguous])
    distractor = (pair_mass + 1.0) * (1 - np.eye(k))
    distractor /= distractor.sum(axis=0, keepdims=True)
    priors = _class_prior(states_t[:, answered].T.dot(to_class).T, 1.0)
    return slip, rho, distractor, priors


def fit_ambiguous_items_codes(item, annotator, label, n_items, n_ann, k, gold_item=None,
                              gold_label=None, **options) -> AmbiguousItemsFit:
    """``model_choice``'s calling convention; ``options`` as ``fit_ambiguous_items``."""
    return fit_ambiguous_items(count_matrix(item, annotator, label, n_items, n_ann, k), k,
                               gold_item=gold_item, gold_label=gold_label, **options)
