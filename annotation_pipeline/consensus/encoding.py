"""Answers as integer codes, and the base every classification aggregator shares.

Aggregators follow crowd-kit's shape (one class per method, ``fit`` / ``fit_predict`` on a frame
of ``item_id, annotator_id, label``, fitted state in trailing-underscore attributes) but are
vectorized end to end: answers are encoded once to integer codes here, and each method works on
those codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ANSWER_COLUMNS = ("item_id", "annotator_id", "label")
# every method ``aggregate_labels`` accepts (the classes are in ``auto.AGGREGATORS``); here so the
# command line can offer them without importing the aggregators
METHODS = ("auto", "mv", "wmv", "ds", "ocds", "bds")
# Log-probability floor: the same 1e-10 clip crowd-kit uses, so a class never seen from an
# annotator keeps a finite (very negative) log-likelihood instead of -inf.
_EPS = 1e-10


class AnswersError(ValueError):
    """The answers frame cannot be aggregated; the message says which column / rows and why."""


@dataclass(frozen=True)
class EncodedAnswers:
    """Answers as integer codes: the shared input of every aggregator."""

    item_codes: np.ndarray       # int64, one per answer
    annotator_codes: np.ndarray  # int64, one per answer
    label_codes: np.ndarray      # int64, one per answer
    items: pd.Index
    annotators: pd.Index
    classes: pd.Index            # sorted class names; code k <-> classes[k]

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def vote_counts(self) -> np.ndarray:
        """(n_classes, n_items) number of votes per class and item."""
        k, n = self.n_classes, self.n_items
        flat = np.bincount(self.label_codes * n + self.item_codes, minlength=k * n)
        return flat.reshape(k, n).astype(np.float64)

    def gold_codes(self, gold: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """(item codes, label codes) of gold answers whose item is among the answered items."""
        if gold is None or len(gold) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        item_pos = self.items.get_indexer(gold["item_id"])
        label_pos = self.classes.get_indexer(gold["label"])
        keep = (item_pos >= 0) & (label_pos >= 0)
        return item_pos[keep].astype(np.int64), label_pos[keep].astype(np.int64)


def validate_answers(answers: pd.DataFrame, what: str = "answers") -> None:
    """Raise ``AnswersError`` naming missing columns or the first rows with empty values."""
    missing = [c for c in ANSWER_COLUMNS if c not in answers.columns]
    if missing:
        raise AnswersError(f"{what}: missing column(s) {', '.join(missing)}; "
                           f"expected {', '.join(ANSWER_COLUMNS)}")
    null = answers[list(ANSWER_COLUMNS)].isna()
    if null.to_numpy().any():
        bad_rows = np.flatnonzero(null.any(axis=1).to_numpy())
        cols = [c for c in ANSWER_COLUMNS if null[c].any()]
        raise AnswersError(f"{what}: {len(bad_rows)} row(s) with an empty {'/'.join(cols)} "
                           f"(first at row {bad_rows[:5].tolist()}); every answer needs "
                           "item_id, annotator_id and label")


def encode_answers(answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> EncodedAnswers:
    """Factorize ids once; classes are the sorted union of answered and gold labels."""
    validate_answers(answers)
    item_codes, items = pd.factorize(answers["item_id"], sort=False)
    annotator_codes, annotators = pd.factorize(answers["annotator_id"], sort=False)
    label_values = answers["label"]
    if gold is not None and len(gold):
        label_values = pd.concat([label_values, gold["label"]], ignore_index=True)
    all_label_codes, classes = pd.factorize(label_values, sort=True)
    return EncodedAnswers(
        item_codes=item_codes.astype(np.int64),
        annotator_codes=annotator_codes.astype(np.int64),
        label_codes=all_label_codes[: len(answers)].astype(np.int64),
        items=pd.Index(items), annotators=pd.Index(annotators), classes=pd.Index(classes),
    )


def _argmax_first(probas_t: np.ndarray) -> np.ndarray:
    """Most probable class per item; ties go to the lowest class code (sorted name), as crowd-kit."""
    return probas_t.argmax(axis=0)


def _softmax_columns(log_scores_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise softmax of a (K, n) array; also returns each column's log-sum-exp."""
    top = log_scores_t.max(axis=0)
    scaled = np.exp(log_scores_t - top)
    total = scaled.sum(axis=0)
    scaled /= total
    return scaled, top + np.log(total)


class _Aggregator:
    """Shared fitted state and outputs of the classification aggregators."""

    method: str = ""
    encoded_: EncodedAnswers
    probas_t_: np.ndarray  # (K, n_items)

    def _set_outputs(self, enc: EncodedAnswers, probas_t: np.ndarray) -> None:
        self.encoded_ = enc
        self.probas_t_ = probas_t
        best = _argmax_first(probas_t)
        self.labels_ = pd.Series(np.asarray(enc.classes)[best], index=enc.items, name="label")
        self.labels_.index.name = "item_id"
        self.confidence_ = pd.Series(probas_t[best, np.arange(enc.n_items)], index=enc.items,
                                     name="confidence")
        self.n_votes_ = pd.Series(np.bincount(enc.item_codes, minlength=enc.n_items),
                                  index=enc.items, name="n_votes")

    @property
    def probas_(self) -> pd.DataFrame:
        """Posterior per item (rows) and class (columns)."""
        frame = pd.DataFrame(self.probas_t_.T, index=self.encoded_.items,
                             columns=self.encoded_.classes)
        frame.index.name = "item_id"
        return frame

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None):  # pragma: no cover
        raise NotImplementedError

    def fit_predict(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> pd.Series:
        return self.fit(answers, gold).labels_

    def result_frame(self) -> pd.DataFrame:
        """``item_id, label, confidence, n_votes`` in item order of first appearance."""
        return pd.DataFrame({
            "item_id": np.asarray(self.encoded_.items),
            "label": self.labels_.to_numpy(),
            "confidence": self.confidence_.to_numpy(),
            "n_votes": self.n_votes_.to_numpy(),
        })


def confusion_frame(encoded: EncodedAnswers, confusion: np.ndarray) -> pd.DataFrame:
    """(annotators, K, K) confusion matrices in crowd-kit's layout: rows (annotator, observed), columns true."""
    n_ann, k = encoded.n_annotators, encoded.n_classes
    index = pd.MultiIndex.from_arrays(
        [np.repeat(np.asarray(encoded.annotators), k), np.tile(np.asarray(encoded.classes), n_ann)],
        names=["annotator_id", "label"])
    return pd.DataFrame(confusion.reshape(n_ann * k, k), index=index, columns=encoded.classes)
