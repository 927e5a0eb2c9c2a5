"""One-coin weighted vote with annotator accuracy measured on hidden gold tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.encoding import _Aggregator, _softmax_columns, encode_answers


class GoldWeightedVote(_Aggregator):
    """One-coin weighted vote with annotator accuracy measured on hidden gold tasks.

    Accuracy is smoothed towards ``prior_accuracy`` with ``prior_strength`` pseudo-answers, so
    an annotator with no gold answers gets the prior. Under the one-coin model a vote for class
    c multiplies its odds by ``(K-1)·acc/(1-acc)``, so the weight is that log-odds (clipped at 0:
    a worse-than-random annotator is ignored rather than inverted) and the confidence is the
    resulting posterior.
    """

    method = "wmv"

    def __init__(self, prior_accuracy: float = 0.7, prior_strength: float = 2.0):
        self.prior_accuracy = prior_accuracy
        self.prior_strength = prior_strength

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> GoldWeightedVote:
        enc = encode_answers(answers, gold)
        k, n_ann = enc.n_classes, enc.n_annotators
        gold_item, gold_label = enc.gold_codes(gold)
        truth = np.full(enc.n_items, -1, np.int64)
        truth[gold_item] = gold_label
        answer_truth = truth[enc.item_codes]
        on_gold = answer_truth >= 0
        n_gold = np.bincount(enc.annotator_codes[on_gold], minlength=n_ann)
        n_correct = np.bincount(enc.annotator_codes[on_gold],
                                weights=(enc.label_codes[on_gold] == answer_truth[on_gold]),
                                minlength=n_ann)
        accuracy = ((n_correct + self.prior_accuracy * self.prior_strength)
                    / (n_gold + self.prior_strength))
        accuracy = np.clip(accuracy, 1e-6, 1 - 1e-6)
        weights = np.maximum(np.log(max(k - 1, 1) * accuracy / (1 - accuracy)), 0.0)
        scores = np.bincount(enc.label_codes * enc.n_items + enc.item_codes,
                             weights=weights[enc.annotator_codes],
                             minlength=k * enc.n_items).reshape(k, enc.n_items)
        probas_t, _ = _softmax_columns(scores)
        self.skills_ = pd.Series(accuracy, index=enc.annotators, name="accuracy")
        self.weights_ = pd.Series(weights, index=enc.annotators, name="weight")
        self.n_gold_ = pd.Series(n_gold, index=enc.annotators, name="n_gold")
        self._set_outputs(enc, probas_t)
        return self

