"""``auto``: the crowd model the held-out answers support, and ``aggregate_labels``, the one call that labels items.

Which aggregator wins depends on the crowd: full Dawid-Skene confusion matrices pay off when
annotators have many answers and systematic, class-conditional mistakes (a small panel that leans
to one class, as Welinder's bluebird set), a one-coin model or MACE when annotators are thin, a
plain vote when skills barely differ or items, not annotators, make the mistakes, and a model of
ambiguous items (``ambiguous_items``) when some items pull everyone to the same wrong class (on
CrowdScale fact evaluation the annotator models gave 1,770 split items to the minority class). The first
``auto`` used a rule on data size; the second averaged three fixed shrinkage levels, which pulled
towards the vote where the data clearly supported confusion matrices (issue 23: 0.750 vs 0.889 on
a bluebird-like set). The third picked the candidate with the best held-out likelihood of answers;
on eleven public crowds beyond the development set that lost 2.5 points to crowd-kit's best on two
of them, each time to a candidate whose fit of the answers was best overall but not everywhere.
Now ``model_choice.choose_model`` *stacks* the candidates: the weights that maximise the held-out
likelihood of their mixture, so a model gets weight for the answers it predicts better than the
others, all of it where it predicts every part better, and the vote keeps the weight when nothing
predicts better than the vote. The members are fitted on all answers (gold items clamped) and
their weighted posterior is the released confidence.
``benchmarks/bench_consensus_methods.py`` measures it against crowd-kit on real and generated crowds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.bayesian_dawid_skene import BayesianDawidSkene, OneCoinDawidSkene
from annotation_pipeline.consensus.dawid_skene import DawidSkene
from annotation_pipeline.consensus.encoding import (
    METHODS,
    AnswersError,
    EncodedAnswers,
    _Aggregator,
    encode_answers,
    validate_answers,
)
from annotation_pipeline.consensus.gold_weighted_vote import GoldWeightedVote
from annotation_pipeline.consensus.majority_vote import MajorityVote
from annotation_pipeline.consensus.model_choice import CANDIDATES, ModelChoice, choose_model


class AutoConsensus(_Aggregator):
    """The stack of crowd models the held-out answers support (``model_choice``), fitted on all answers.

    The posterior is the weighted mean over ``members_`` (``weights_``, summing to 1): where the
    data clearly supports one model that is the only member; where several each predict part of
    the answers, they share the posterior.

    Fitted state: ``probas_``, ``labels_``, ``confidence_``, ``skills_`` (weighted mean accuracy per
    annotator over the members), ``priors_``, ``chosen_`` (the member with the most weight),
    ``members_``, ``weights_``, ``choice_`` (the held-out evidence per candidate) and ``errors_``
    (weighted mean confusion matrices, crowd-kit's layout; GLAD counts as the one-coin matrix of
    its mean accuracy).
    """

    method = "auto"

    def __init__(self, candidates: dict | None = None, n_folds: int = 3):
        self.candidates = candidates
        self.n_folds = n_folds

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> AutoConsensus:
        enc = encode_answers(answers, gold)
        return self.fit_encoded(enc, *enc.gold_codes(gold))

    def fit_encoded(self, enc: EncodedAnswers, gold_item: np.ndarray | None = None,
                    gold_label: np.ndarray | None = None) -> AutoConsensus:
        k = max(enc.n_classes, 1)
        candidates = CANDIDATES if self.candidates is None else self.candidates
        args = (enc.item_codes, enc.annotator_codes, enc.label_codes, enc.n_items,
                enc.n_annotators, k)
        self.choice_: ModelChoice = choose_model(*args, gold_item=gold_item, gold_label=gold_label,
                                                 n_folds=self.n_folds, candidates=candidates)
        self.chosen_ = self.choice_.chosen
        self.members_ = self.choice_.members
        self.weights_ = pd.Series([self.choice_.weights[name] for name in self.members_],
                                  index=self.members_, name="weight")
        w = self.weights_.to_numpy()
        fits = [candidates[name](*args, gold_item, gold_label) for name in self.members_]

        def weighted(values):
            return np.tensordot(w, np.asarray(values, dtype=float), axes=1)

        self.skills_ = pd.Series(weighted([f.accuracy for f in fits]), index=enc.annotators,
                                 name="accuracy")
        self.priors_ = pd.Series(weighted([f.priors for f in fits]), index=enc.classes, name="prior")
        self.confusion_ = weighted([_confusion(f, enc.n_annotators, k) for f in fits])
        self._set_outputs(enc, weighted([f.probas_t for f in fits]))
        return self

    errors_ = BayesianDawidSkene.errors_


def _confusion(fit, n_annotators: int, k: int) -> np.ndarray:
    """(annotators, K observed, K true); GLAD has none, so its mean accuracy as a one-coin matrix."""
    if hasattr(fit, "confusion"):
        return fit.confusion
    off = (1 - fit.accuracy) / max(k - 1, 1)
    return (np.broadcast_to(off[:, None, None], (n_annotators, k, k)).copy()
            + (fit.accuracy - off)[:, None, None] * np.eye(k))


AGGREGATORS = {"auto": AutoConsensus, "mv": MajorityVote, "wmv": GoldWeightedVote,
               "ds": DawidSkene, "ocds": OneCoinDawidSkene, "bds": BayesianDawidSkene}


def aggregate_labels(answers: pd.DataFrame, method: str = "auto",
                     gold: pd.DataFrame | None = None) -> pd.DataFrame:
    """One label per item: ``item_id, label, confidence, n_votes`` (the method in ``attrs``)."""
    if method not in METHODS:
        raise AnswersError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    validate_answers(answers)
    # nothing to weigh: every model reduces to counting, and an empty frame has no classes
    chosen = "mv" if len(answers) == 0 else method
    model = AGGREGATORS[chosen]().fit(answers, gold)
    result = model.result_frame()
    result.attrs["method"] = chosen
    result.attrs["model"] = model
    return result
