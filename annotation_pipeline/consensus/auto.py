"""Method choice (``auto``) and ``aggregate_labels``, the one call that labels items."""

from __future__ import annotations

import pandas as pd

from annotation_pipeline.consensus.dawid_skene import DawidSkene
from annotation_pipeline.consensus.encoding import AnswersError, validate_answers
from annotation_pipeline.consensus.gold_weighted_vote import GoldWeightedVote
from annotation_pipeline.consensus.majority_vote import MajorityVote

METHODS = ("auto", "mv", "wmv", "ds")
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

