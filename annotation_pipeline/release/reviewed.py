"""Review decisions over consensus: the day's labels as the release takes them.

The latest decision on each (non-gold) review task is applied to the day's consensus labels:

- ``confirm``: the candidate is released as it was shown;
- ``override``: the candidate is released with the reviewer's class;
- ``reject``: the candidate stays unreleased.

A decision replaces the consensus label it was about: the item's scene label for a scene
decision (the reviewer has the last word on an item's scene), the released object with the
candidate's class and box for an audited object. A decision on a queued candidate (a cluster
that was not released) adds the object. Each reviewed label says ``label_source = review`` and
names its ``review_decision_id``; consensus labels say ``consensus``.

A reviewed label's ``confidence`` is the reviewer's accuracy on the day's hidden gold review
tasks, smoothed as (correct + 1) / (gold + 2): 0.5 for a reviewer nobody has measured yet; a
confirm of a released label keeps the consensus confidence when that is higher (a second
opinion never lowers it). ``n_annotators`` counts the candidate's answers that gave the
released class; a polygon keeps the consensus outline when audited, else takes the outline of
the first answer behind it (a below-quorum cluster is usually one answer).

The same consensus and decisions give the same labels: a rerun releases nothing new.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.review_decisions import reviewer_accuracy
from annotation_pipeline.contracts import CONSENSUS_LABELS, RELEASED_LABELS, REVIEW_DECISIONS, require_columns

REVIEW_METHOD = "review"
COORDS = ["x_min", "y_min", "x_max", "y_max"]


def smoothed_accuracy(decisions: pd.DataFrame) -> pd.Series:
    """(n_correct + 1) / (n_gold + 2) per reviewer: their accuracy on gold, 0.5 when unmeasured."""
    accuracy = reviewer_accuracy(decisions).set_index("reviewer_id")
    return (accuracy["n_correct"] + 1) / (accuracy["n_gold"] + 2)


def _support(applied: pd.DataFrame, answers: pd.DataFrame) -> np.ndarray:
    """Answers behind each applied decision that gave its final class (vectorized explode + join)."""
    exploded = applied[["decision_id", "annotation_ids", "final_label"]].assign(
        annotation_id=applied["annotation_ids"].str.split()).explode("annotation_id")
    joined = exploded.merge(answers[["annotation_id", "label"]], on="annotation_id", how="left")
    agree = (joined["label"] == joined["final_label"]).groupby(joined["decision_id"]).sum()
    return agree.reindex(applied["decision_id"]).fillna(0).astype("int64").to_numpy()


def _first_outline(applied: pd.DataFrame, answers: pd.DataFrame) -> np.ndarray:
    first = applied["annotation_ids"].str.split().str[0]
    outlines = answers.drop_duplicates("annotation_id").set_index("annotation_id")["geometry_wkb"]
    return outlines.reindex(first).to_numpy(dtype=object)


def _decided_consensus_rows(consensus: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Which consensus row each decision was about: the item's scene label, or the released object
    with the candidate's class and box (an audited label). Columns: decision_id, row (or -1)."""
    labels = consensus.reset_index(drop=True).rename_axis("row").reset_index()
    scenes = latest[latest["kind"] == "choice"][["decision_id", "item_id"]].merge(
        labels.loc[labels["kind"] == "choice", ["item_id", "row"]], on="item_id")
    rounded = {c: latest[c].round(2) for c in COORDS}
    keys = latest[latest["kind"] != "choice"].assign(label=latest["candidate_label"], **rounded)
    objects = keys[["decision_id", "item_id", "kind", "label", *COORDS]].merge(
        labels[labels["kind"] != "choice"].assign(**{c: labels[c].round(2) for c in COORDS})[
            ["item_id", "kind", "label", *COORDS, "row"]], on=["item_id", "kind", "label", *COORDS])
    found = pd.concat([scenes[["decision_id", "row"]], objects[["decision_id", "row"]]], ignore_index=True)
    return found.drop_duplicates("decision_id")


def apply_review_decisions(consensus_labels: pd.DataFrame, decisions: pd.DataFrame,
                           answers: pd.DataFrame) -> pd.DataFrame:
    """RELEASED_LABELS: ``consensus_labels`` with the latest review decision of each task applied.

    ``answers`` are the day's returned annotations (ANNOTATIONS): support counts and outlines.
    """
    CONSENSUS_LABELS.validate(consensus_labels)
    REVIEW_DECISIONS.validate(decisions)
    require_columns(answers, ["annotation_id", "label", "geometry_wkb"], "returned annotations (review input)")
    consensus_labels = consensus_labels.reset_index(drop=True)
    latest = decisions[~decisions["is_gold"].to_numpy(bool) & ~decisions["superseded"].to_numpy(bool)]
    about = _decided_consensus_rows(consensus_labels, latest)
    base = consensus_labels.drop(index=about["row"].unique()).assign(label_source="consensus",
                                                                     review_decision_id=None, auto_accept_evidence=None)
    applied = latest[latest["final_label"].notna().to_numpy()].reset_index(drop=True)
    if applied.empty:
        return RELEASED_LABELS.conform(base)
    row_of = about.set_index("decision_id")["row"].reindex(applied["decision_id"]).to_numpy()
    audited = ~pd.isna(row_of)
    consensus_at = consensus_labels.reindex(np.where(audited, row_of, -1).astype(int))  # -1: no row, all NaN
    reviewer = smoothed_accuracy(decisions).reindex(applied["reviewer_id"]).fillna(0.5).to_numpy(float)
    # a confirm adds a second opinion to the consensus: it never lowers the confidence released
    candidate = np.where(audited, consensus_at["confidence"].to_numpy(float), 0.0)
    confirmed = (applied["decision"] == "confirm").to_numpy()
    outline = np.where(audited, consensus_at["geometry_wkb"].to_numpy(dtype=object), _first_outline(applied, answers))
    reviewed = pd.DataFrame({
        "item_id": applied["item_id"], "kind": applied["kind"], "label": applied["final_label"],
        **{c: applied[c] for c in COORDS},
        "geometry_wkb": np.where(applied["kind"].to_numpy() == "polygon", outline, None),
        "confidence": np.where(confirmed, np.fmax(candidate, reviewer), reviewer),
        "n_annotators": _support(applied, answers), "n_assigned": applied["n_assigned"],
        "method": REVIEW_METHOD, "annotation_ids": applied["annotation_ids"],
        "label_source": "review", "review_decision_id": applied["decision_id"], "auto_accept_evidence": None,
    })
    return RELEASED_LABELS.conform(pd.concat([RELEASED_LABELS.conform(base), RELEASED_LABELS.conform(reviewed)],
                                             ignore_index=True))


def review_figures(decisions: pd.DataFrame, day_labels: pd.DataFrame) -> dict[str, int]:
    """What review did to the day, for the release's quality report (applied decisions only)."""
    latest = decisions[~decisions["is_gold"].to_numpy(bool) & ~decisions["superseded"].to_numpy(bool)]
    counts = latest["decision"].value_counts()
    return {"reviewer_decisions_applied": len(latest),
            **{f"reviewer_{past}": int(counts.get(d, 0))
               for d, past in (("confirm", "confirmed"), ("override", "overrode"), ("reject", "rejected"))},
            "labels_from_review": int((day_labels["label_source"] == "review").sum())}
