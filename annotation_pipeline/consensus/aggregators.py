"""Merge several annotators' answers into one label per item, every merge explainable.

Classification aggregators follow crowd-kit's shape (one class per method, ``fit`` /
``fit_predict`` on a frame of ``item_id, annotator_id, label``, fitted state in trailing-underscore
attributes) but are vectorized end to end: answers are encoded once to integer codes and the EM of
Dawid-Skene runs as two sparse products per iteration, classes-major, in log space.

``run_consensus`` is the stage entry point the Dagster asset calls: scene choices are aggregated
(gold tasks calibrate annotators but never appear in the release), boxes and polygons are merged by
IoU (see ``boxes``), agreement is measured (see ``agreement``) and everything that is not confident
enough goes to the review queue with its evidence. Nothing is overwritten: a queued item keeps all
of its answers in the queue and is *not* in ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from annotation_pipeline.consensus import agreement as agreement_mod
from annotation_pipeline.consensus.boxes import (
    annotator_geometry_reliability,
    join_strings_by_group,
    merge_boxes_by_iou,
    merge_polygons_by_iou,
)
from annotation_pipeline.contracts import AGREEMENT_METRICS, CONSENSUS_LABELS, REVIEW_QUEUE

ANSWER_COLUMNS = ("item_id", "annotator_id", "label")
METHODS = ("auto", "mv", "wmv", "ds")
# Log-probability floor: the same 1e-10 clip crowd-kit uses, so a class never seen from an
# annotator keeps a finite (very negative) log-likelihood instead of -inf.
_EPS = 1e-10


class AnswersError(ValueError):
    """The answers frame cannot be aggregated; the message says which column / rows and why."""


# --------------------------------------------------------------------------------------------
# encoding


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


class MajorityVote(_Aggregator):
    """Plain vote; confidence = share of the winning label's votes (gold is ignored)."""

    method = "mv"

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> "MajorityVote":
        enc = encode_answers(answers, gold)
        counts = enc.vote_counts()
        self._set_outputs(enc, counts / np.maximum(counts.sum(axis=0), 1.0))
        return self


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

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> "GoldWeightedVote":
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


class DawidSkene(_Aggregator):
    """Dawid & Skene (1979): a full confusion matrix per annotator, fitted by EM.

    Initialized from majority vote, as crowd-kit. Each iteration is two sparse products over the
    (item × annotator·label) count matrix, laid out classes-major so the per-item softmax runs
    over contiguous rows. ``smoothing`` adds pseudo-counts to every confusion cell (a Dirichlet
    prior) so an annotator seen a few times does not get hard zeros; gold items have their
    posterior clamped to the known answer in every E-step (they calibrate the confusion
    matrices). Stops when the mean log-likelihood per answer improves by less than ``tol``.
    """

    method = "ds"

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.01):
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def fit(self, answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> "DawidSkene":
        enc = encode_answers(answers, gold)
        k, n_ann, n_items = enc.n_classes, enc.n_annotators, enc.n_items
        n_answers = len(enc.item_codes)
        pair_code = enc.annotator_codes * k + enc.label_codes
        # counts[item, annotator·K + observed label]; duplicates add up
        counts = sp.csr_matrix((np.ones(n_answers), (enc.item_codes, pair_code)),
                               shape=(n_items, n_ann * k))
        counts_t = counts.T.tocsr()
        gold_item, gold_label = enc.gold_codes(gold)

        def clamp(probas_t: np.ndarray) -> np.ndarray:
            if len(gold_item):
                probas_t[:, gold_item] = 0.0
                probas_t[gold_label, gold_item] = 1.0
            return probas_t

        votes = enc.vote_counts()
        probas_t = clamp(votes / np.maximum(votes.sum(axis=0), 1.0))
        log_lik_history: list[float] = []
        errors = self._m_step(counts_t, probas_t, n_ann, k)
        priors = probas_t.mean(axis=1)
        for _ in range(self.n_iter):
            log_errors = np.log(errors).reshape(n_ann * k, k)  # rows: annotator·K + observed
            log_scores_t = np.asarray(counts @ log_errors).T + np.log(np.maximum(priors, _EPS))[:, None]
            probas_t, log_norm = _softmax_columns(np.ascontiguousarray(log_scores_t))
            probas_t = clamp(probas_t)
            log_lik_history.append(float(log_norm.sum() / max(n_answers, 1)))
            priors = probas_t.mean(axis=1)
            errors = self._m_step(counts_t, probas_t, n_ann, k)
            if len(log_lik_history) > 1 and log_lik_history[-1] - log_lik_history[-2] < self.tol:
                break
        self.loss_history_ = log_lik_history
        self.n_iter_ = len(log_lik_history)
        self.priors_ = pd.Series(priors, index=enc.classes, name="prior")
        self.confusion_ = errors  # (annotator, observed, true): P(observed | true)
        # Accuracy implied by the confusion matrix: P(observed == true) under the class prior.
        accuracy = np.einsum("acc,c->a", errors, priors)
        self.skills_ = pd.Series(accuracy, index=enc.annotators, name="accuracy")
        self._set_outputs(enc, probas_t)
        return self

    def _m_step(self, counts_t: sp.csr_matrix, probas_t: np.ndarray, n_ann: int,
                k: int) -> np.ndarray:
        # expected[annotator·K + observed, true] = Σ_items counts · P(true | item)
        expected = np.asarray(counts_t @ probas_t.T).reshape(n_ann, k, k) + self.smoothing
        expected = np.maximum(expected, _EPS)
        return expected / expected.sum(axis=1, keepdims=True)

    @property
    def errors_(self) -> pd.DataFrame:
        """Confusion matrices in crowd-kit's layout: rows (annotator, observed), columns true."""
        enc = self.encoded_
        n_ann, k = enc.n_annotators, enc.n_classes
        index = pd.MultiIndex.from_arrays(
            [np.repeat(np.asarray(enc.annotators), k), np.tile(np.asarray(enc.classes), n_ann)],
            names=["annotator_id", "label"])
        return pd.DataFrame(self.confusion_.reshape(n_ann * k, k), index=index,
                            columns=enc.classes)


AGGREGATORS = {"mv": MajorityVote, "wmv": GoldWeightedVote, "ds": DawidSkene}


def choose_method(answers: pd.DataFrame, gold: pd.DataFrame | None = None) -> str:
    """Pick an aggregator from data size and gold availability (the ``auto`` rule).

    Dawid-Skene estimates K·(K-1) free parameters per annotator; below ~10·K answers per
    annotator (median) those estimates are noise and a one-coin model does better. Gold then
    decides between a gold-weighted vote and a plain vote. Two answers per item on average are
    needed for any model-based method to see disagreement at all.
    """
    validate_answers(answers)
    if len(answers) == 0:
        return "mv"
    n_classes = max(int(answers["label"].nunique()), 2)
    per_annotator = answers.groupby("annotator_id", sort=False).size()
    per_item = len(answers) / max(answers["item_id"].nunique(), 1)
    has_gold = gold is not None and len(gold) > 0 and bool(
        answers["item_id"].isin(gold["item_id"]).any())
    if per_item >= 2 and float(per_annotator.median()) >= 10 * n_classes:
        return "ds"
    return "wmv" if has_gold else "mv"


def aggregate_labels(answers: pd.DataFrame, method: str = "auto",
                     gold: pd.DataFrame | None = None) -> pd.DataFrame:
    """One label per item: ``item_id, label, confidence, n_votes`` (the method in ``attrs``)."""
    if method not in METHODS:
        raise AnswersError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    chosen = choose_method(answers, gold) if method == "auto" else method
    model = AGGREGATORS[chosen]().fit(answers, gold)
    result = model.result_frame()
    result.attrs["method"] = chosen
    result.attrs["model"] = model
    return result


# --------------------------------------------------------------------------------------------
# stage entry point


@dataclass
class ConsensusResult:
    labels: pd.DataFrame                 # contracts.CONSENSUS_LABELS
    review_queue: pd.DataFrame           # contracts.REVIEW_QUEUE
    agreement: pd.DataFrame              # contracts.AGREEMENT_METRICS
    annotator_reliability: pd.DataFrame  # annotator_id, scene_accuracy, gold_accuracy, n_gold, geometry_weight
    counts: dict[str, int]               # reconciliation figures for asset metadata
    method: str                          # aggregator actually used for scene choices


def _join_ids(values: pd.Series, groups: pd.Series) -> pd.Series:
    """Space-separated annotation ids per group (provenance strings), vectorized."""
    codes, uniques = pd.factorize(groups)
    return pd.Series(join_strings_by_group(values, codes, len(uniques)), index=uniques)


def run_consensus(annotations: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame, *,
                  method: str = "auto", iou_threshold: float = 0.5,
                  min_confidence: float = 0.7) -> ConsensusResult:
    """Scene labels, merged objects, agreement and the review queue for returned annotations.

    - Scene (kind ``choice``): aggregated with ``method`` over all tasks; gold tasks calibrate
      annotators (their known answers clamp the posterior) and are excluded from ``labels``.
      Items whose confidence is below ``min_confidence`` go to the review queue *instead of*
      ``labels`` (reason ``low_confidence``), with every answer's annotation id.
    - Objects (kinds ``box`` / ``polygon``): merged per item and class by IoU with at most one
      object per annotator per cluster; quorum = a majority of the annotators who saw the item
      (anyone who answered the item's task). Fused geometry is weighted by each annotator's
      geometry reliability (agreement with a first, unweighted consensus). Clusters below
      quorum go to the review queue (``below_quorum``). Gold items are excluded here too.
    """
    annotations = annotations.reset_index(drop=True)
    gold_items = set(tasks.loc[tasks["is_gold"].astype(bool), "item_id"]) | set(
        annotations.loc[annotations["is_gold"].astype(bool), "item_id"])
    is_gold_row = annotations["item_id"].isin(gold_items).to_numpy()
    kind = annotations["kind"].to_numpy()

    # who saw which item: every annotator who returned anything for it
    seen = annotations[["item_id", "annotator_id"]].drop_duplicates()
    n_assigned = seen.groupby("item_id", sort=False).size().rename("n_assigned")

    # ---- scene choices
    choices = annotations[kind == "choice"]
    gold_choice = gold.loc[gold["kind"] == "choice", ["item_id", "label"]] if len(gold) else None
    scene_labels = CONSENSUS_LABELS.empty()
    scene_queue = REVIEW_QUEUE.empty()
    scene_model = None
    chosen = "none"
    if len(choices):
        result = aggregate_labels(choices[list(ANSWER_COLUMNS)], method, gold_choice)
        chosen = result.attrs["method"]
        scene_model = result.attrs["model"]
        ids = _join_ids(choices["annotation_id"], choices["item_id"])
        result["annotation_ids"] = ids.reindex(result["item_id"]).to_numpy()
        result["n_assigned"] = n_assigned.reindex(result["item_id"]).to_numpy()
        # n_annotators = annotators who voted for the released label
        support = choices.groupby(["item_id", "label"], sort=False)["annotator_id"].nunique()
        keys = pd.MultiIndex.from_arrays([result["item_id"], result["label"]])
        result["n_annotators"] = support.reindex(keys).fillna(0).to_numpy()
        result = result[~result["item_id"].isin(gold_items)]
        confident = result["confidence"].to_numpy() >= min_confidence
        base = result.assign(kind="choice", x_min=np.nan, y_min=np.nan, x_max=np.nan,
                             y_max=np.nan, geometry_wkb=None, method=chosen)
        scene_labels = CONSENSUS_LABELS.conform(base[confident])
        scene_queue = REVIEW_QUEUE.conform(base[~confident].assign(reason="low_confidence"))

    # ---- geometry (gold items calibrate nothing here; they are simply not released)
    objects = annotations[((kind == "box") | (kind == "polygon")) & ~is_gold_row]
    objects = objects.assign(n_assigned=n_assigned.reindex(objects["item_id"]).to_numpy())
    geometry_frames, queue_frames, members = [], [], []
    weights = None
    for geometry_kind, merge in (("box", merge_boxes_by_iou), ("polygon", merge_polygons_by_iou)):
        subset = objects[objects["kind"] == geometry_kind]
        if not len(subset):
            continue
        first = merge(subset, iou_threshold=iou_threshold)
        weights_kind = annotator_geometry_reliability(first)
        weights = weights_kind if weights is None else pd.concat([weights, weights_kind]).groupby(
            level=0).mean()
        merged = merge(subset, iou_threshold=iou_threshold, annotator_weights=weights_kind)
        geometry_frames.append(merged.merged.assign(kind=geometry_kind, method="iou_cluster"))
        queue_frames.append(merged.below_quorum.assign(kind=geometry_kind, reason="below_quorum"))
        members.append(merged.members.assign(kind=geometry_kind))

    for frame in geometry_frames:
        if "geometry_wkb" not in frame.columns:
            frame["geometry_wkb"] = None
    labels = pd.concat([scene_labels] + [CONSENSUS_LABELS.conform(f) for f in geometry_frames],
                       ignore_index=True)
    review = pd.concat([scene_queue] + [REVIEW_QUEUE.conform(f) for f in queue_frames],
                       ignore_index=True)
    labels = CONSENSUS_LABELS.conform(labels)
    review = REVIEW_QUEUE.conform(review)

    # ---- agreement and reliability
    member_frame = pd.concat(members, ignore_index=True) if members else None
    consensus_scene = (scene_model.labels_.rename("label").reset_index()
                       if scene_model is not None else None)
    metrics = agreement_mod.agreement_table(
        choices[["item_id", "annotator_id", "label"]].assign(
            batch_id=choices["batch_id"].to_numpy()) if len(choices) else None,
        consensus=consensus_scene, geometry_members=member_frame,
        gold=gold_choice)
    reliability = _annotator_reliability(annotations, scene_model, gold_choice, weights)
    counts = {
        "annotations_received": int(len(annotations)),
        "scene_answers": int(len(choices)),
        "object_annotations": int(len(objects)),
        "gold_answers": int(is_gold_row.sum()),
        "scene_items_labeled": int(len(scene_labels)),
        "scene_items_queued": int(len(scene_queue)),
        "objects_merged": int(sum(len(f) for f in geometry_frames)),
        "clusters_below_quorum": int(sum(len(f) for f in queue_frames)),
    }
    return ConsensusResult(labels=labels, review_queue=review,
                           agreement=AGREEMENT_METRICS.conform(metrics),
                           annotator_reliability=reliability, counts=counts, method=chosen)


def _annotator_reliability(annotations: pd.DataFrame, scene_model, gold_choice,
                           geometry_weights: pd.Series | None) -> pd.DataFrame:
    annotators = pd.Index(annotations["annotator_id"].drop_duplicates(), name="annotator_id")
    frame = pd.DataFrame(index=annotators)
    frame["scene_accuracy"] = (scene_model.skills_.reindex(annotators).to_numpy()
                               if scene_model is not None and hasattr(scene_model, "skills_")
                               else np.nan)
    choices = annotations[annotations["kind"] == "choice"]
    if gold_choice is not None and len(gold_choice) and len(choices):
        joined = choices.merge(gold_choice.rename(columns={"label": "gold_label"}), on="item_id")
        hit = (joined["label"] == joined["gold_label"]).groupby(joined["annotator_id"])
        frame["gold_accuracy"] = hit.mean().reindex(annotators).to_numpy()
        frame["n_gold"] = hit.size().reindex(annotators).fillna(0).astype("int64").to_numpy()
    else:
        frame["gold_accuracy"] = np.nan
        frame["n_gold"] = 0
    frame["geometry_weight"] = (geometry_weights.reindex(annotators).to_numpy()
                                if geometry_weights is not None else np.nan)
    return frame.reset_index()
