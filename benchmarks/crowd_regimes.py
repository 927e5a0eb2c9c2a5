"""Generated crowds with known truth, one per regime a real project meets (for the consensus benchmark).

Each regime changes one thing a real crowd does to the answers: how many answers an annotator
gives (dense panels, long-tailed marketplaces), how many classes, spammers (uniform and
always-the-same-class), skewed classes, systematic confusions between neighbouring classes,
items that are hard for everyone, and items with a single answer. Every answer is
``(item_id, annotator_id, label)``; the truth is a Series by item.

The regimes after ``thin_marketplace`` (issue 23) mimic the shapes on which a fixed committee
lost to plain Dawid-Skene or to the vote on real data: a small dense binary panel of many workers
with class-conditional biases and a few adversaries (as Welinder's bluebird set), many classes with
few answers per worker, workers with a favourite class, heavy spammers, a long tail over several
classes. Their workers are *not* Dawid-Skene-perfect: besides each worker's confusion matrix, some
items are ambiguous and pull every worker towards the same wrong class (correlated mistakes), so
no model here is the generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _frame(item: np.ndarray, worker: np.ndarray, label: np.ndarray, truth: np.ndarray):
    answers = pd.DataFrame({"item_id": item, "annotator_id": worker, "label": label})
    return answers.drop_duplicates(["item_id", "annotator_id"]), pd.Series(truth, name="label")


def _assign(rng, n_items: int, per_item: np.ndarray, activity: np.ndarray):
    """Annotators per item, drawn without replacement in proportion to ``activity``."""
    p = activity / activity.sum()
    item = np.repeat(np.arange(n_items), per_item)
    # Gumbel top-k per item: weighted sampling without replacement, vectorized
    keys = np.log(p)[None, :] - np.log(-np.log(rng.random((n_items, len(p)))))
    order = np.argsort(-keys, axis=1)
    rank = np.arange(per_item.max())[None, :] < per_item[:, None]
    worker = order[:, : per_item.max()][rank]
    return item, worker


def _answers(rng, truth, item, worker, confusion):
    """Observed labels drawn from each worker's confusion matrix (n_workers, K obs, K true)."""
    probs = confusion[worker, :, truth[item]]  # (n_answers, K)
    cum = probs.cumsum(axis=1)
    return (rng.random(len(item))[:, None] > cum).sum(axis=1).clip(0, probs.shape[1] - 1)


def _one_coin(accuracy: np.ndarray, k: int) -> np.ndarray:
    off = (1 - accuracy) / max(k - 1, 1)
    conf = np.broadcast_to(off[:, None, None], (len(accuracy), k, k)).copy()
    conf[:, np.arange(k), np.arange(k)] = accuracy[:, None]
    return conf


def regime(name: str, seed: int = 0):
    """(answers, truth) of one named regime; see ``REGIMES``."""
    rng = np.random.default_rng(seed)
    spec = REGIMES[name]
    k, n_items, n_workers = spec["k"], spec["items"], spec["workers"]
    prior = np.asarray(spec.get("prior", np.full(k, 1.0 / k)))
    truth = rng.choice(k, n_items, p=prior)
    per_item = np.asarray(spec["per_item"](rng, n_items))
    activity = spec.get("activity", lambda r, n: np.ones(n))(rng, n_workers)
    item, worker = _assign(rng, n_items, np.minimum(per_item, n_workers), activity)
    confusion = spec["confusion"](rng, n_workers, k)
    label = _answers(rng, truth, item, worker, confusion)
    if "ambiguity" in spec:  # ambiguous items: workers slip to the item's one distractor class
        share, slip = spec["ambiguity"]
        ambiguous = rng.random(n_items) < share
        distractor = (truth + rng.integers(1, max(k, 2), n_items)) % k
        slips = ambiguous[item] & (rng.random(len(item)) < slip)
        label = np.where(slips, distractor[item], label)
    if "difficulty" in spec:  # hard items: everybody answers them close to at random
        hard = rng.random(n_items) < spec["difficulty"]
        noisy = hard[item] & (rng.random(len(item)) < 0.7)
        label = np.where(noisy, rng.integers(0, k, len(item)), label)
    return _frame(item, worker, label, truth)


def _heterogeneous(low: float, high: float, spam: float = 0.0, constant_spam: float = 0.0):
    def make(rng, n, k):
        acc = rng.uniform(low, high, n)
        conf = _one_coin(acc, k)
        n_spam, n_const = int(spam * n), int(constant_spam * n)
        conf[:n_spam] = 1.0 / k  # uniform spammers
        for w in range(n_spam, n_spam + n_const):  # always answer the same class
            conf[w] = 0.0
            conf[w, rng.integers(0, k), :] = 1.0
        return conf
    return make


def _neighbour_confusion(rng, n, k):
    """Ordinal classes: mistakes go to the adjacent class, and some workers lean one way."""
    conf = np.zeros((n, k, k))
    acc = rng.uniform(0.45, 0.85, n)
    lean = rng.uniform(0.1, 0.9, n)
    for t in range(k):
        up, down = min(t + 1, k - 1), max(t - 1, 0)
        conf[:, t, t] += acc
        conf[:, up, t] += (1 - acc) * lean
        conf[:, down, t] += (1 - acc) * (1 - lean)
    return conf


def _biased_towards_majority(rng, n, k):
    """Skewed classes: weak workers answer the common class when unsure."""
    acc = rng.uniform(0.5, 0.95, n)
    conf = _one_coin(acc, k) * 0.5
    conf[:, 0, :] += 0.5 * (1 - acc)[:, None]
    conf[:, np.arange(k), np.arange(k)] += 0.5 * acc[:, None]
    return conf / conf.sum(axis=1, keepdims=True)


def _biased_panel(rng, n, k):
    """Binary panel as bluebird: most workers lean to one class (high recall on it, poor on the
    other), a few are good at both, a few answer against the truth."""
    conf = np.zeros((n, k, k))
    kind = rng.choice(4, n, p=[0.45, 0.25, 0.2, 0.1])  # lean to 1, lean to 0, good, adversarial
    recall = np.empty((n, 2))
    recall[kind == 0] = np.c_[rng.uniform(0.15, 0.6, (kind == 0).sum()), rng.uniform(0.85, 0.98, (kind == 0).sum())]
    recall[kind == 1] = np.c_[rng.uniform(0.85, 0.98, (kind == 1).sum()), rng.uniform(0.3, 0.7, (kind == 1).sum())]
    recall[kind == 2] = rng.uniform(0.75, 0.95, ((kind == 2).sum(), 2))
    recall[kind == 3] = rng.uniform(0.15, 0.4, ((kind == 3).sum(), 2))
    for t in range(2):
        conf[:, t, t] = recall[:, t]
        conf[:, 1 - t, t] = 1 - recall[:, t]
    return conf


def _grouped_confusion(group: int, favourite: float):
    """Many classes in look-alike groups of ``group``: mistakes stay mostly inside the group, and
    each worker has a favourite class they answer with probability up to ``favourite`` when unsure."""
    def make(rng, n, k):
        acc = rng.uniform(0.3, 0.9, n)
        same = np.arange(k)[:, None] // group == np.arange(k)[None, :] // group
        within = same & ~np.eye(k, dtype=bool)
        pattern = np.where(within, 4.0, 1.0) * ~np.eye(k, dtype=bool)  # (obs, true)
        pattern = pattern / pattern.sum(axis=0, keepdims=True)
        fav = rng.integers(0, k, n)
        lean = rng.uniform(0, favourite, n)
        wrong = (1 - lean)[:, None, None] * pattern[None] + lean[:, None, None] * np.eye(k)[fav][:, :, None]
        conf = acc[:, None, None] * np.eye(k)[None] + (1 - acc)[:, None, None] * wrong
        return conf / conf.sum(axis=1, keepdims=True)
    return make


def _favourite_class(rng, n, k):
    """Each worker answers their favourite class whenever unsure (class-conditional confusion)."""
    acc = rng.uniform(0.45, 0.9, n)
    fav = rng.integers(0, k, n)
    conf = acc[:, None, None] * np.eye(k)[None] + (1 - acc)[:, None, None] * (
        0.75 * np.eye(k)[fav][:, :, None] + 0.25 / k)
    return conf / conf.sum(axis=1, keepdims=True)


def _systematic_swaps(n_swaps: int):
    """Many classes, each worker with their own systematic confusions: on ``n_swaps`` true classes
    they mostly answer one specific other class (a private misreading of the guideline)."""
    def make(rng, n, k):
        acc = rng.uniform(0.6, 0.95, n)
        conf = _one_coin(acc, k)
        for w in range(n):
            for t in rng.choice(k, n_swaps, replace=False):
                wrong = (t + rng.integers(1, k)) % k
                conf[w, :, t] = 0.05 / k
                conf[w, t, t] = rng.uniform(0.15, 0.4)
                conf[w, wrong, t] += 1 - conf[w, :, t].sum()
        return conf
    return make


def _lenient_checkers(rng, n, k):
    """Fact checking (as CrowdScale's): class 1 = holds, 0 = does not, 2 = cannot tell (rare).
    Workers rarely reject what holds (P(0 | 1) 2-12 %), let a share of what does not hold pass
    (P(1 | 0) 5-35 %, by worker), and answer "does not hold" for most of what cannot be told."""
    conf = np.zeros((n, k, k))
    reject_true = rng.uniform(0.02, 0.12, n)
    pass_false = rng.uniform(0.05, 0.35, n)
    conf[:, 0, 1], conf[:, 2, 1] = reject_true, 0.005
    conf[:, 1, 1] = 1 - reject_true - 0.005
    conf[:, 1, 0], conf[:, 2, 0] = pass_false, 0.005
    conf[:, 0, 0] = 1 - pass_false - 0.005
    told = rng.uniform(0.02, 0.3, n)
    conf[:, 2, 2], conf[:, 0, 2] = told, 0.75 * (1 - told)
    conf[:, 1, 2] = 0.25 * (1 - told)
    return conf


def _long_tail(rng, n):
    return rng.pareto(1.2, n) + 0.05


REGIMES: dict[str, dict] = {
    "dense_binary": dict(k=2, items=400, workers=8, per_item=lambda r, n: np.full(n, 8),
                         confusion=_heterogeneous(0.55, 0.9)),
    "sparse_10_classes": dict(k=10, items=800, workers=60, per_item=lambda r, n: np.full(n, 4),
                              activity=_long_tail, confusion=_heterogeneous(0.35, 0.9)),
    "spammers_30pct": dict(k=4, items=600, workers=30, per_item=lambda r, n: np.full(n, 5),
                           confusion=_heterogeneous(0.6, 0.9, spam=0.2, constant_spam=0.1)),
    "skewed_classes": dict(k=3, items=800, workers=25, prior=[0.8, 0.15, 0.05],
                           per_item=lambda r, n: np.full(n, 5), confusion=_biased_towards_majority),
    "single_answers": dict(k=4, items=1000, workers=40,
                           per_item=lambda r, n: r.choice([1, 1, 2, 3], n),
                           activity=_long_tail, confusion=_heterogeneous(0.5, 0.95, spam=0.1)),
    "ordinal_confusions": dict(k=5, items=600, workers=15, per_item=lambda r, n: np.full(n, 5),
                               confusion=_neighbour_confusion),
    "hard_items": dict(k=3, items=600, workers=20, per_item=lambda r, n: np.full(n, 7),
                       difficulty=0.3, confusion=_heterogeneous(0.6, 0.85)),
    "many_classes_dense": dict(k=12, items=300, workers=10, per_item=lambda r, n: np.full(n, 6),
                               confusion=_heterogeneous(0.4, 0.85, spam=0.1)),
    "thin_marketplace": dict(k=2, items=1500, workers=300, per_item=lambda r, n: np.full(n, 3),
                             activity=_long_tail, confusion=_heterogeneous(0.55, 0.95, spam=0.15)),
    # issue 23: the shapes where a fixed committee lost
    "bluebird_like": dict(k=2, items=108, workers=39, prior=[0.45, 0.55],
                          per_item=lambda r, n: np.full(n, 39), ambiguity=(0.15, 0.5),
                          confusion=_biased_panel),
    "many_classes_few_answers": dict(k=15, items=1500, workers=400,
                                     per_item=lambda r, n: r.choice([3, 4, 5], n),
                                     activity=_long_tail, ambiguity=(0.2, 0.4),
                                     confusion=_grouped_confusion(3, 0.5)),
    "twenty_classes_panel": dict(k=20, items=600, workers=25, per_item=lambda r, n: np.full(n, 4),
                                 ambiguity=(0.2, 0.4), confusion=_grouped_confusion(4, 0.6)),
    "many_classes_swaps": dict(k=8, items=1000, workers=15, per_item=lambda r, n: np.full(n, 5),
                               ambiguity=(0.1, 0.4), confusion=_systematic_swaps(3)),
    "favourite_class": dict(k=4, items=800, workers=40, per_item=lambda r, n: np.full(n, 5),
                            ambiguity=(0.1, 0.5), confusion=_favourite_class),
    "heavy_spammers": dict(k=3, items=600, workers=30, per_item=lambda r, n: np.full(n, 6),
                           ambiguity=(0.1, 0.5),
                           confusion=_heterogeneous(0.6, 0.9, spam=0.35, constant_spam=0.15)),
    # many items, 5 answers each from a few dozen workers of very unequal volume, skewed and
    # asymmetric classes, ambiguous items that pull everyone to the same wrong answer: the shape of
    # CrowdScale fact evaluation (yl_fact_eval), where the vote beats every annotator model on gold
    "fact_check_like": dict(k=3, items=6000, workers=57, prior=[0.33, 0.62, 0.05],
                            per_item=lambda r, n: np.full(n, 5), activity=_long_tail,
                            ambiguity=(0.15, 0.4), confusion=_lenient_checkers),
    "long_tail_5_classes": dict(k=5, items=2000, workers=500, per_item=lambda r, n: np.full(n, 3),
                                activity=_long_tail, ambiguity=(0.15, 0.5),
                                confusion=_favourite_class),
}
