"""What was tried to bring ``auto`` to the vote on yl_fact_eval without losing elsewhere (issue 23).

``auto`` (held-out model choice) labels CrowdScale fact evaluation 2.43 points under majority
vote while MACE and shrunk Dawid-Skene predict its held-out answers 7 standard errors better than
the vote. Each probe asks one truth-free question and prints what it would do to the labels:

- ``disagreement``: the held-out gain of each candidate over the vote, on the answers of items
  where the two label differently (the only items where the choice changes a label), and the
  share of held-out answers equal to each model's label (a label-level criterion instead of a
  likelihood one). If either sided with the vote on yl_fact_eval, it could arbitrate.
- ``tempered``: each candidate's posterior tempered, prior x likelihood^tau, with tau fitted on the
  held-out answers (correlated mistakes make a posterior overconfident; tau < 1 pulls ties
  towards the prior, i.e. towards the class most answered).
- ``hard_items``: a model in which an item is easy (answers follow each annotator's confusion
  matrix) or hard (answers follow one pooled confusion shared by everybody), added as a
  candidate (``hard_30``: confusions shrunk by 30 pseudo-answers, as ``confusion_30``).
- ``vote_blend``: the vote's posterior averaged into ``auto``'s with a fixed weight w.
- ``pick_or_stack`` (third session): on the same held-out answers, the fourth step's rule (the
  best candidate 2 standard errors clear of the vote, averaged with those within one standard
  error of it) against the stack ``auto`` uses now (``model_choice.stacking_weights``), each also
  without the ambiguous-items candidates.

The sparse truth itself is checked by ``real_crowds.py`` (``truth_sample``). Results and their
reading: benchmarks/results_consensus.md, "`auto`, fourth step". Probes run on the candidates of the
code they are run with (since the fourth step: with the ambiguous-items models). Run:
    python benchmarks/consensus_probes.py [--probes disagreement,tempered,hard_items,vote_blend,pick_or_stack]
                                          [--seeds 0,1,2] [--regimes bluebird_like,...]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene
from crowdkit.aggregation import MajorityVote as CrowdKitMajorityVote
from scipy.special import logsumexp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from crowd_regimes import REGIMES, regime  # noqa: E402
from real_crowds import real_crowds  # noqa: E402

from annotation_pipeline.consensus.auto import AutoConsensus  # noqa: E402
from annotation_pipeline.consensus.bayesian_dawid_skene import _class_prior, _m_step, count_matrix  # noqa: E402
from annotation_pipeline.consensus.encoding import _softmax_columns, encode_answers  # noqa: E402
from annotation_pipeline.consensus.majority_vote import fit_vote_model  # noqa: E402
from annotation_pipeline.consensus.model_choice import (  # noqa: E402
    BASELINE,
    CANDIDATES,
    held_out_log_lik,
    informative,
    mean_by_annotator,
    stacking_weights,
    usable_candidates,
)

TAUS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2])
BLEND_WEIGHTS = (0.0, 0.25, 0.5)


# ------------------------------------------------------------------ the hard-items model
@dataclass
class HardItemsFit:
    probas_t: np.ndarray          # (K, n_items) P(true class | answers)
    hard_t: np.ndarray            # (K, n_items) P(true class, item hard | answers)
    confusion: np.ndarray         # easy items: (annotators, K observed, K true)
    hard_confusion: np.ndarray    # hard items, everybody: (K observed, K true)
    priors: np.ndarray
    hard_share: float
    accuracy: np.ndarray

    def answer_likelihood(self, item, annotator, label):
        easy = self.confusion[annotator, label, :]
        hard = self.hard_confusion[label, :]
        w_hard = self.hard_t[:, item].T / np.maximum(self.probas_t[:, item].T, 1e-300)
        return (1 - w_hard) * easy + w_hard * hard


def fit_hard_items(item, annotator, label, n_items, n_ann, k, gold_item=None, gold_label=None,
                   coin_strength=30.0, skill_strength=5.0, hard_strength=10.0, n_iter=100, tol=1e-5):
    counts = count_matrix(item, annotator, label, n_items, n_ann, k)
    counts_t = counts.T.tocsr()
    votes = np.bincount(label * n_items + item, minlength=k * n_items).reshape(k, n_items).astype(float)
    answered = votes.sum(axis=0) > 0
    probas = votes / np.maximum(votes.sum(axis=0), 1.0)
    easy, hard = 0.8 * probas, 0.2 * probas
    history: list[float] = []
    for _ in range(n_iter):
        confusion, _ = _m_step(counts_t, easy, n_ann, k, coin_strength, skill_strength)
        pooled = votes @ hard.T + hard_strength / k
        hard_conf = pooled / pooled.sum(axis=0, keepdims=True)
        share = float((hard[:, answered].sum() + 1.0) / (answered.sum() + 2.0))
        priors = _class_prior(easy[:, answered] + hard[:, answered], 1.0)
        log_conf = np.log(confusion).reshape(n_ann * k, k)
        s_easy = np.asarray(counts @ log_conf).T + np.log(priors)[:, None] + math.log(1 - share)
        s_hard = np.log(hard_conf).T @ votes + np.log(priors)[:, None] + math.log(share)
        both, log_norm = _softmax_columns(np.vstack([s_easy, s_hard]))
        easy, hard = both[:k].copy(), both[k:].copy()
        history.append(float(log_norm[answered].sum() / max(len(item), 1)))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
    confusion, _ = _m_step(counts_t, easy, n_ann, k, coin_strength, skill_strength)
    return HardItemsFit(easy + hard, hard, confusion, hard_conf, priors, share,
                        np.einsum("acc,c->a", confusion, priors))


# ------------------------------------------------------------------ data
def crowds(regimes: list[str], seeds: tuple[int, ...]):
    for name, _, answers, gold in real_crowds():
        yield f"real: {name}", answers, gold.set_index("item_id")["label"].astype(str)
    for name in regimes:
        for seed in seeds:
            answers, truth = regime(name, seed)
            truth.index = truth.index.astype(str)
            yield f"{name}:{seed}", answers.astype(str), truth.astype(str)


def best_of_crowdkit(answers: pd.DataFrame, truth: pd.Series) -> float:
    crowdkit = answers.rename(columns={"item_id": "task", "annotator_id": "worker"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = [CrowdKitMajorityVote().fit_predict(crowdkit), CrowdKitDawidSkene(n_iter=100).fit_predict(crowdkit)]
    common = truth.index.intersection(labels[0].index)
    return max(float((lab.reindex(common) == truth[common]).mean()) for lab in labels)


def _codes(answers, truth):
    enc = encode_answers(answers)
    args = (enc.item_codes, enc.annotator_codes, enc.label_codes, enc.n_items, enc.n_annotators,
            max(enc.n_classes, 1))
    code = {c: i for i, c in enumerate(enc.classes)}
    truth_code = pd.Series(list(enc.items)).map(truth).map(code).to_numpy(dtype=float, na_value=np.nan)
    return enc, args, truth_code


def _folds(args, fit, folds):
    """Per answer: held-out log-lik and the fold model's label of its item; and the fold fits
    with each fold's test mask and answer likelihoods."""
    item, annotator, label, n_items, n_ann, k = args
    log_lik, models = held_out_log_lik(fit, item, annotator, label, n_items, n_ann, k, folds, None, None)
    fold_label, fits = np.empty(len(item), int), []
    for f, model in zip(np.unique(folds), models):  # held_out_log_lik fits folds in this order
        test = folds == f
        fold_label[test] = model.probas_t.argmax(axis=0)[item[test]]
        fits.append((test, model, model.answer_likelihood(item[test], annotator[test], label[test])))
    return log_lik, fold_label, fits


# ------------------------------------------------------------------ probes
def probe_disagreement(name, answers, truth, best):
    enc, args, truth_code = _codes(answers, truth)
    item, annotator, label, n_items, n_ann, k = args
    folds = np.random.default_rng(0).integers(0, 3, len(item))
    has = ~np.isnan(truth_code)
    ref_ll, ref_label, _ = _folds(args, CANDIDATES[BASELINE], folds)
    ref_full = CANDIDATES[BASELINE](*args, None, None).probas_t.argmax(axis=0)
    rows = []
    for cand, fit in CANDIDATES.items():
        if cand == BASELINE:
            continue
        ll, lab, _ = _folds(args, fit, folds)
        differ = lab != ref_label
        g_dis, se_dis = mean_by_annotator((ll - ref_ll) * differ, annotator, n_ann)
        agree = (lab == label).astype(float) - (ref_label == label)
        g_agree, se_agree = mean_by_annotator(agree, annotator, n_ann)
        full = fit(*args, None, None).probas_t.argmax(axis=0)
        rows.append({"crowd": name, "candidate": cand,
                     "z held-out gain where labels differ": g_dis / max(se_dis, 1e-12),
                     "z held-out answers = label": g_agree / max(se_agree, 1e-12),
                     "items relabelled": int((full != ref_full).sum()),
                     "accuracy - vote's (points)": 100 * (np.mean(full[has] == truth_code[has])
                                                          - np.mean(ref_full[has] == truth_code[has]))})
    return rows


def _tempered(probas_t, priors, tau):
    log_prior = np.log(np.maximum(priors, 1e-300))[:, None]
    scores = log_prior + tau * (np.log(np.maximum(probas_t, 1e-300)) - log_prior)
    return _softmax_columns(np.ascontiguousarray(scores))[0]


def probe_tempered(name, answers, truth, best):
    enc, args, truth_code = _codes(answers, truth)
    item = args[0]
    folds = np.random.default_rng(0).integers(0, 3, len(item))
    has = ~np.isnan(truth_code)
    rows = []
    for cand, fit in CANDIDATES.items():
        _, _, fits = _folds(args, fit, folds)
        ll = np.zeros(len(TAUS))
        for test, model, lik in fits:
            for t, tau in enumerate(TAUS):
                post = _tempered(model.probas_t, model.priors, tau)
                ll[t] += np.log(np.maximum(np.einsum("nk,kn->n", lik, post[:, item[test]]), 1e-300)).sum()
        tau = TAUS[int(np.argmax(ll))]
        model = fit(*args, None, None)
        plain = np.mean(model.probas_t.argmax(axis=0)[has] == truth_code[has])
        tempered = np.mean(_tempered(model.probas_t, model.priors, tau).argmax(axis=0)[has] == truth_code[has])
        rows.append({"crowd": name, "candidate": cand, "tau": tau, "accuracy - best (points)": 100 * (plain - best),
                     "tempered - best (points)": 100 * (tempered - best)})
    return rows


def probe_hard_items(name, answers, truth, best):
    enc, args, truth_code = _codes(answers, truth)
    has = ~np.isnan(truth_code)
    with_hard = AutoConsensus(candidates={**CANDIDATES, "hard_30": fit_hard_items}).fit(answers)
    plain = AutoConsensus().fit(answers)
    alone = fit_hard_items(*args)
    common = truth.index.intersection(plain.labels_.index)

    def acc(labels):
        return float((labels.reindex(common) == truth[common]).mean())
    return [{"crowd": name, "auto - best (points)": 100 * (acc(plain.labels_) - best),
             "auto with hard_30 - best": 100 * (acc(with_hard.labels_) - best),
             "hard_30 alone - best": 100 * (np.mean(alone.probas_t.argmax(0)[has] == truth_code[has]) - best),
             "hard share": alone.hard_share,
             "gain hard_30 / mace (mnats)": f"{1e3 * with_hard.choice_.gain['hard_30']:.0f} / "
                                            f"{1e3 * with_hard.choice_.gain['mace']:.0f}",
             "members": "+".join(with_hard.members_)}]


def probe_vote_blend(name, answers, truth, best):
    enc, args, truth_code = _codes(answers, truth)
    has = ~np.isnan(truth_code)
    model = AutoConsensus().fit(answers)
    posterior = model.probas_.reindex(list(enc.items)).to_numpy().T
    vote = fit_vote_model(*args).probas_t
    row = {"crowd": name}
    for w in BLEND_WEIGHTS:
        blended = ((1 - w) * posterior + w * vote).argmax(axis=0)
        row[f"w={w} - best (points)"] = 100 * (np.mean(blended[has] == truth_code[has]) - best)
    return [row]


def _picked(log_lik: dict, ok: dict, annotator, n_ann: int, names: list[str]) -> list[str]:
    """The fourth step's members: the best candidate 2 SE clear of the vote, and every informative
    one whose held-out likelihood is within one SE of it."""
    gain = {c: mean_by_annotator(log_lik[c] - log_lik[BASELINE], annotator, n_ann) for c in names}
    eligible = [c for c in names if c == BASELINE or (ok[c] and gain[c][0] > 2 * gain[c][1])]
    best = max(eligible, key=lambda c: gain[c][0])

    def within_one_se(c):
        behind, se = mean_by_annotator(log_lik[best] - log_lik[c], annotator, n_ann)
        return behind <= se

    return [c for c in names if ok[c] and within_one_se(c)]


def _stack_inputs(args):
    """As ``choose_model`` (3 folds, seed 0): per candidate its held-out log-likelihood per answer,
    whether it is informative, and its posterior fitted on all answers."""
    item, annotator, label, n_items, n_ann, k = args
    folds = np.random.default_rng(0).integers(0, 3, len(item))
    names = list(usable_candidates(CANDIDATES, n_items, k))
    log_lik, ok, probas = {}, {}, {}
    for c in names:
        log_lik[c], models = held_out_log_lik(CANDIDATES[c], *args, folds, None, None)
        ok[c] = c == BASELINE or all(informative(m, k) for m in models)
        probas[c] = CANDIDATES[c](*args, None, None).probas_t
    return names, log_lik, ok, probas


def _stacked(names: list[str], log_lik: dict, ok: dict) -> dict:
    """The stack ``choose_model`` makes of the informative candidates: name -> weight."""
    stacked = [c for c in names if ok[c]]
    return dict(zip(stacked, stacking_weights(np.stack([log_lik[c] for c in stacked]))))


def _label_points(labels: np.ndarray, truth_code, best) -> float:
    """Accuracy on the truth items minus the better of crowd-kit MV/DS, in points."""
    has = ~np.isnan(truth_code)
    return 100 * (np.mean(labels[has] == truth_code[has]) - best)


def _points(probas: dict, weights: dict, truth_code, best) -> float:
    return _label_points(sum(w * probas[c] for c, w in weights.items()).argmax(axis=0), truth_code, best)


def probe_pick_or_stack(name, answers, truth, best):
    enc, args, truth_code = _codes(answers, truth)
    annotator, n_ann = args[1], args[4]
    names, log_lik, ok, probas = _stack_inputs(args)

    def points(weights: dict) -> float:
        return _points(probas, weights, truth_code, best)

    row = {"crowd": name}
    for suffix, pool in (("", names), (" (no ambiguous)", [c for c in names if not c.startswith("ambiguous")])):
        picked = _picked(log_lik, ok, annotator, n_ann, pool)
        row[f"pick - best{suffix}"] = points({c: 1 / len(picked) for c in picked})
        row[f"stack - best{suffix}"] = points(_stacked(pool, log_lik, ok))
    return [row]


def probe_anchor(name, answers, truth, best):
    """The stack may relabel only items where the vote and Dawid-Skene (``confusion_1``) disagree;
    where those two agree, their label stands."""
    enc, args, truth_code = _codes(answers, truth)
    names, log_lik, ok, probas = _stack_inputs(args)
    weights = _stacked(names, log_lik, ok)
    stack_label = sum(w * probas[c] for c, w in weights.items()).argmax(axis=0)
    vote, ds = probas[BASELINE].argmax(axis=0), probas["confusion_1"].argmax(axis=0)
    anchored = np.where(vote == ds, vote, stack_label)
    return [{"crowd": name, "stack - best": _label_points(stack_label, truth_code, best),
             "anchored - best": _label_points(anchored, truth_code, best),
             "items the anchor relabels": int((anchored != stack_label).sum())}]


def _item_state_log_lik(model, item, annotator, label):
    """(answers, states) log P(answer | the item's latent state): the K classes, or for
    ``ambiguous_items`` its K clear and K(K-1) (class, distractor) states."""
    if hasattr(model, "state_likelihood"):
        return np.log(np.maximum(model.state_likelihood(annotator, label), 1e-300))
    return np.log(np.maximum(model.answer_likelihood(item, annotator, label), 1e-300))


def held_out_item_log_lik(fit, item, annotator, label, n_items, n_ann, k, n_folds=3, seed=0):
    """Per item: log p(all its answers) under a model fitted on the other folds of *items*,
    log Σ_state prior(state) Π_answers P(answer | state) (GLAD: the easiness of an unseen item)."""
    fold_of_item = np.random.default_rng(seed).integers(0, n_folds, n_items)
    out, ok = np.zeros(n_items), True
    for f in range(n_folds):
        test_items = fold_of_item == f
        test = test_items[item]
        model = fit(item[~test], annotator[~test], label[~test], n_items, n_ann, k, None, None)
        ok &= informative(model, k)
        ll = _item_state_log_lik(model, item[test], annotator[test], label[test])
        per_state = np.zeros((n_items, ll.shape[1]))
        np.add.at(per_state, item[test], ll)
        states = model.states_t if hasattr(model, "state_likelihood") else model.probas_t
        prior = np.log(np.maximum(states[:, test_items].mean(axis=1), 1e-300))
        out[test_items] = logsumexp(per_state[test_items] + prior[None, :], axis=1)
    return out, ok


def probe_item_folds(name, answers, truth, best):
    """The stack fitted on held-out *items* (the joint likelihood of all the answers of an item the
    fit never saw) instead of held-out answers of items it saw."""
    enc, args, truth_code = _codes(answers, truth)
    item, annotator, label, n_items, n_ann, k = args
    names, log_lik, ok, probas = _stack_inputs(args)
    answered = np.bincount(item, minlength=n_items) > 0
    item_ll, item_ok = {}, {}
    for c in names:
        item_ll[c], item_ok[c] = held_out_item_log_lik(CANDIDATES[c], *args)
    by_answer = _stacked(names, log_lik, ok)
    by_item = _stacked(names, {c: ll[answered] for c, ll in item_ll.items()},
                       {c: ok[c] and item_ok[c] for c in names})
    return [{"crowd": name, "stack on answers - best": _points(probas, by_answer, truth_code, best),
             "stack on items - best": _points(probas, by_item, truth_code, best),
             "item-stack weights": ", ".join(f"{c} {w:.2f}" for c, w in by_item.items() if w >= 0.01)}]


PROBES = {"disagreement": probe_disagreement, "tempered": probe_tempered,
          "hard_items": probe_hard_items, "vote_blend": probe_vote_blend,
          "pick_or_stack": probe_pick_or_stack, "anchor": probe_anchor,
          "item_folds": probe_item_folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", default=",".join(PROBES))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--regimes", default="bluebird_like,many_classes_swaps,favourite_class,heavy_spammers,hard_items",
                        help="generated regimes (comma-separated; 'all' = every one)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    regimes = list(REGIMES) if args.regimes == "all" else [r for r in args.regimes.split(",") if r]
    seeds = tuple(int(s) for s in args.seeds.split(","))
    probes = args.probes.split(",")
    rows: dict[str, list] = {p: [] for p in probes}
    for name, answers, truth in crowds(regimes, seeds):
        best = best_of_crowdkit(answers, truth)
        for probe in probes:
            rows[probe] += PROBES[probe](name, answers, truth, best)
    pd.set_option("display.width", 220)
    for probe in probes:
        table = pd.DataFrame(rows[probe])
        print(f"\n## {probe}\n")
        print(table.round(3).to_markdown(index=False))
        numeric = table.select_dtypes("number").drop(columns=["tau", "items relabelled", "hard share"], errors="ignore")
        if probe in ("vote_blend", "hard_items", "pick_or_stack", "anchor", "item_folds"):
            print("\nmean / min over the crowds:", numeric.mean().round(2).to_dict(), "/", numeric.min().round(2).to_dict())


if __name__ == "__main__":
    main()
