"""Gates decided by evidence: a rate is judged against its threshold only when an interval says so.

Why Beta posteriors (Jeffreys prior, Beta(1/2, 1/2)) rather than Wilson intervals: the batch
gold gate is not one proportion but the *median annotator*, weighted by each annotator's share
of the gold answers (one spammer among five must not fail a batch; consensus down-weights
them). Each annotator's accuracy gets its own posterior from their own gold count; the
probability that the weighted median clears the threshold then follows exactly from those
posteriors (a sum of independent Bernoulli events, computed by dynamic programming over
integer answer counts), where Wilson gives no way to combine. For a single proportion the
Jeffreys interval is the one Brown, Cai and DasGupta (2001) recommend beside Wilson for small
counts, and it stays inside [0, 1] at 0 or n successes.

Every gate has three outcomes at confidence ``c`` (one-sided):
``pass`` when P(rate on the right side of the threshold) >= c, ``fail`` when P(rate on the
wrong side) >= c, else ``insufficient``: the evidence cannot tell, the gate does not block,
and :attr:`Evidence.needed` says how many answers (or records) would decide at the current
estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc, betaincinv

PASS, FAIL, INSUFFICIENT = "pass", "fail", "insufficient"
_MAX_SCALE = 64.0   # needed: look for a decision up to 64 times today's evidence, no further


@dataclass(frozen=True)
class Evidence:
    """What a gate concluded about a rate, in numbers a person can check."""
    estimate: float | None          # point estimate (None: no evidence at all)
    lower: float                    # one-sided bounds at ``confidence``: together the
    upper: float                    # (2c - 1) equal-tailed credible interval
    confidence: float
    threshold: float
    direction: str                  # "at_least" (gold accuracy) or "at_most" (quarantine share)
    decision: str                   # PASS, FAIL or INSUFFICIENT
    n: int                          # answers (or records) the evidence rests on
    needed: int                     # answers (or records) that would decide; 0 once decided

    def as_metadata(self, unit: str) -> dict:
        def r(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(float(x), 4)
        return {"estimate": r(self.estimate), "interval": [r(self.lower), r(self.upper)],
                "confidence": self.confidence, "threshold": self.threshold, "direction": self.direction,
                "decision": self.decision, f"n_{unit}": self.n, f"{unit}_needed": self.needed}


def _decide(p_right_side: float, confidence: float) -> str:
    if p_right_side >= confidence:
        return PASS
    if 1.0 - p_right_side >= confidence:
        return FAIL
    return INSUFFICIENT


# ---------------------------------------------------------------- one proportion

def proportion_evidence(events: int, trials: int, *, threshold: float, confidence: float,
                        direction: str = "at_most") -> Evidence:
    """Jeffreys posterior of a proportion (e.g. the share of records quarantined)."""
    if trials <= 0:
        return Evidence(None, 0.0, 1.0, confidence, threshold, direction, INSUFFICIENT, 0, 1)
    a, b = events + 0.5, trials - events + 0.5
    lower, upper = betaincinv(a, b, [1 - confidence, confidence])

    def decision_at(scale: float) -> str:
        p_below = float(betainc(events * scale + 0.5, (trials - events) * scale + 0.5, threshold))
        return _decide(p_below if direction == "at_most" else 1.0 - p_below, confidence)

    decision = decision_at(1.0)
    needed = _scale_needed(decision_at, trials) if decision == INSUFFICIENT else 0
    return Evidence(events / trials, float(lower), float(upper), confidence, threshold, direction,
                    decision, int(trials), needed)


# ---------------------------------------------------------------- the weighted median annotator

_SCALES = np.geomspace(1.0, _MAX_SCALE, 97)  # multiples of today's evidence tried for `needed` (4.4 % apart)


def _p_weight_at_least_half(q: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of ``q`` (rows x annotators, each the probability of an independent event):
    P(sum of the weights of the events that happen >= half the total weight).

    Exact, by dynamic programming over the integer weights (answer counts), all rows at once:
    O(annotators x answers) array operations.
    """
    total = int(weights.sum())
    dist = np.zeros((q.shape[0], total + 1))
    dist[:, 0] = 1.0
    for a, w in enumerate(weights.astype(int)):
        p = q[:, a:a + 1]
        shifted = np.zeros_like(dist)
        shifted[:, w:] = dist[:, :total + 1 - w]
        dist = dist * (1 - p) + shifted * p
    return dist[:, math.ceil(total / 2):].sum(axis=1)


def _p_median_at_least(x: np.ndarray, correct: np.ndarray, judged: np.ndarray,
                       weights: np.ndarray) -> np.ndarray:
    """P(weighted median annotator accuracy >= x) under the annotators' Jeffreys posteriors,
    for each rate in ``x`` (broadcast against ``correct`` and ``judged``, annotators last)."""
    q = betainc(judged - correct + 0.5, correct + 0.5, 1.0 - x)  # P(theta_a >= x) per annotator
    return _p_weight_at_least_half(np.atleast_2d(q), weights)


def _median_quantile(correct: np.ndarray, judged: np.ndarray, answers: np.ndarray, prob: float) -> float:
    """The largest rate x with P(weighted median >= x) >= prob, to 1e-4: a coarse grid, then a
    fine one inside the bracketing step (P falls as x grows)."""
    lo, step = 0.0, 1.0 / 100
    for _ in range(2):
        grid = lo + step * np.arange(101)
        ok = _p_median_at_least(grid[:, None], correct, judged, answers) >= prob
        lo = float(grid[ok].max(initial=lo))
        step /= 100
    return lo


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value at or above which annotators carry at least half the weight (lower weighted median)."""
    order = np.argsort(-values, kind="stable")
    carried = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(carried, weights.sum() / 2)])


def median_annotator_evidence(correct: np.ndarray, judged: np.ndarray, answers: np.ndarray, *,
                              threshold: float, confidence: float) -> Evidence:
    """Does the annotator at the median of the gold answers clear ``threshold``?

    Per annotator: ``correct`` of ``judged`` gold elements right, over ``answers`` gold answers
    (their weight: their share of the batch's gold answers). The batch passes when, with
    probability >= ``confidence``, annotators at or above the threshold carry at least half
    the gold answers; it fails when, with that probability, they do not.
    """
    correct, judged = np.asarray(correct, float), np.asarray(judged, float)
    answers = np.asarray(answers, dtype=np.int64)
    keep = (judged > 0) & (answers > 0)
    correct, judged, answers = correct[keep], judged[keep], answers[keep]
    n = int(answers.sum())
    if n == 0:
        return Evidence(None, 0.0, 1.0, confidence, threshold, "at_least", INSUFFICIENT, 0, 0)
    lower = _median_quantile(correct, judged, answers, confidence)
    upper = _median_quantile(correct, judged, answers, 1 - confidence)
    p_pass = float(_p_median_at_least(np.array([[threshold]]), correct, judged, answers)[0])
    decision = _decide(p_pass, confidence)
    needed = 0
    if decision == INSUFFICIENT:
        scale = _SCALES[:, None]
        p_scaled = _p_median_at_least(threshold, correct * scale, judged * scale, answers)
        decided = np.flatnonzero((p_scaled >= confidence) | (p_scaled <= 1 - confidence))
        needed = math.ceil((_SCALES[decided[0]] if len(decided) else _MAX_SCALE) * n)
    return Evidence(weighted_median(correct / judged, answers), lower, upper, confidence, threshold,
                    "at_least", decision, n, needed)


def _scale_needed(decision_at, n: int) -> int:
    """How many answers would decide, if more came in like today's: the smallest scale of
    today's evidence (same estimates, same shares) that reaches a decision, times ``n``.
    When even ``_MAX_SCALE`` times today's evidence cannot decide (the estimate sits on the
    threshold), that bound is reported."""
    if decision_at(_MAX_SCALE) == INSUFFICIENT:
        return math.ceil(_MAX_SCALE * n)
    lo, hi = 1.0, _MAX_SCALE
    while hi - lo > 0.5 / max(n, 1):
        mid = (lo + hi) / 2
        if decision_at(mid) == INSUFFICIENT:
            lo = mid
        else:
            hi = mid
    return math.ceil(hi * n)
