"""Inter-annotator agreement, measured honestly and vectorized.

All statistics start from integer codes and ``np.bincount``: Cohen's kappa for every annotator
pair at once from one (pair × K × K) confusion tensor, Fleiss' kappa and Krippendorff's alpha
from the (item × class) vote matrix (the coincidence matrix of nominal alpha collapses to sums
over that matrix). Missing answers are allowed everywhere: an item counts for Fleiss and alpha
when at least two annotators answered it, and a pair for Cohen on the items both answered.
A repeated answer of one annotator on one item counts once (the first).

Undefined figures (e.g. kappa when both annotators always give the same single label) are NaN,
never a made-up 0 or 1; means skip them and say on how many values they rest (``n``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation_pipeline.consensus.boxes import candidate_pairs


@dataclass(frozen=True)
class _Coded:
    item: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    annotators: pd.Index
    classes: pd.Index


def _code(answers: pd.DataFrame, classes: pd.Index | None = None) -> _Coded:
    answers = answers.drop_duplicates(["item_id", "annotator_id"], keep="first")
    item, _ = pd.factorize(answers["item_id"])
    annotator, annotators = pd.factorize(answers["annotator_id"])
    if classes is None:
        label, classes = pd.factorize(answers["label"], sort=True)
    else:
        label = classes.get_indexer(answers["label"])
    order = np.argsort(item, kind="stable")
    return _Coded(item[order].astype(np.int64), annotator[order].astype(np.int64),
                  label[order].astype(np.int64), pd.Index(annotators), pd.Index(classes))


def _vote_matrix(coded: _Coded) -> np.ndarray:
    """(n_items, K) answers per item and class."""
    k = max(len(coded.classes), 1)
    n_items = int(coded.item.max()) + 1 if len(coded.item) else 0
    return np.bincount(coded.item * k + coded.label, minlength=n_items * k).reshape(n_items, k)


def fleiss_kappa(answers: pd.DataFrame) -> float:
    """Fleiss' kappa; items with a varying number of answers are allowed (≥ 2 to count)."""
    votes = _vote_matrix(_code(answers)).astype(np.float64)
    m = votes.sum(axis=1)
    votes, m = votes[m >= 2], m[m >= 2]
    if not len(m):
        return float("nan")
    p_item = ((votes ** 2).sum(axis=1) - m) / (m * (m - 1))
    p_class = votes.sum(axis=0) / m.sum()
    expected = float((p_class ** 2).sum())
    if np.isclose(expected, 1.0):
        return float("nan")
    return float((p_item.mean() - expected) / (1.0 - expected))


def krippendorff_alpha_nominal(answers: pd.DataFrame) -> float:
    """Krippendorff's alpha, nominal level, missing answers allowed.

    With n_uc the answers of class c on item u and m_u = Σ_c n_uc (pairable items only):
    alpha = 1 - (n - 1) · Σ_u (m_u² - Σ_c n_uc²) / (m_u - 1)  /  (n² - Σ_c n_c²).
    """
    votes = _vote_matrix(_code(answers)).astype(np.float64)
    m = votes.sum(axis=1)
    votes, m = votes[m >= 2], m[m >= 2]
    n = m.sum()
    n_c = votes.sum(axis=0)
    expected = n ** 2 - (n_c ** 2).sum()
    if n == 0 or expected == 0:
        return float("nan")
    observed = ((m ** 2 - (votes ** 2).sum(axis=1)) / (m - 1)).sum()
    return float(1.0 - (n - 1) * observed / expected)


def _kappa_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's kappa per (P, K, K) confusion slice, and the number of items per slice."""
    n = confusion.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.trace(confusion, axis1=1, axis2=2) / n
        row = confusion.sum(axis=2) / n[:, None]
        col = confusion.sum(axis=1) / n[:, None]
        expected = (row * col).sum(axis=1)
        kappa = np.where(np.isclose(expected, 1.0), np.nan, (observed - expected) / (1 - expected))
    return kappa, n


def cohen_kappa_pairwise(answers: pd.DataFrame) -> pd.DataFrame:
    """Cohen's kappa of every annotator pair on the items both answered.

    Returns ``annotator_a, annotator_b, kappa, n`` (NaN kappa where undefined).
    """
    coded = _code(answers)
    k = max(len(coded.classes), 1)
    i, j = candidate_pairs(coded.item, coded.annotator)
    a, b = coded.annotator[i], coded.annotator[j]
    swap = a > b  # orient every pair as (lower code, higher code)
    la = np.where(swap, coded.label[j], coded.label[i])
    lb = np.where(swap, coded.label[i], coded.label[j])
    a, b = np.minimum(a, b), np.maximum(a, b)
    pair_key, pair_code = np.unique(a * len(coded.annotators) + b, return_inverse=True)
    confusion = np.bincount(pair_code * k * k + la * k + lb,
                            minlength=len(pair_key) * k * k).reshape(-1, k, k)
    kappa, n = _kappa_from_confusion(confusion)
    names = np.asarray(coded.annotators)
    return pd.DataFrame({
        "annotator_a": names[pair_key // len(coded.annotators)],
        "annotator_b": names[pair_key % len(coded.annotators)],
        "kappa": kappa, "n": n.astype(np.int64),
    })


def cohen_kappa_pairwise_mean(answers: pd.DataFrame) -> float:
    """Mean of the defined pairwise Cohen's kappas (NaN if none is defined)."""
    kappas = cohen_kappa_pairwise(answers)["kappa"].dropna()
    return float(kappas.mean()) if len(kappas) else float("nan")


def cohen_kappa_vs_reference(answers: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: Cohen's kappa and accuracy against reference labels (consensus or gold).

    ``reference``: ``item_id, label``. Returns ``annotator_id, kappa, accuracy, n``.
    """
    joined = answers.drop_duplicates(["item_id", "annotator_id"]).merge(
        reference[["item_id", "label"]].drop_duplicates("item_id").rename(
            columns={"label": "reference"}), on="item_id")
    if not len(joined):
        return pd.DataFrame({"annotator_id": pd.Series(dtype=object), "kappa": [], "accuracy": [],
                             "n": pd.Series(dtype=np.int64)})
    codes, classes = pd.factorize(pd.concat([joined["label"], joined["reference"]]), sort=True)
    k = len(classes)
    mine, ref = codes[: len(joined)], codes[len(joined):]
    annotator, annotators = pd.factorize(joined["annotator_id"])
    confusion = np.bincount(annotator * k * k + mine * k + ref,
                            minlength=len(annotators) * k * k).reshape(-1, k, k)
    kappa, n = _kappa_from_confusion(confusion)
    accuracy = np.trace(confusion, axis1=1, axis2=2) / n
    return pd.DataFrame({"annotator_id": np.asarray(annotators), "kappa": kappa,
                         "accuracy": accuracy, "n": n.astype(np.int64)})


def _one_vs_rest(answers: pd.DataFrame, label: str) -> pd.DataFrame:
    return answers.assign(label=np.where(answers["label"].to_numpy() == label, label, "other"))


def class_agreement(answers: pd.DataFrame) -> pd.DataFrame:
    """One-vs-rest agreement per class: ``label, cohen_kappa, fleiss_kappa, krippendorff_alpha, n``."""
    rows = []
    for label in sorted(answers["label"].unique()):  # loops over classes, not answers
        binary = _one_vs_rest(answers, label)
        rows.append({"label": label,
                     "cohen_kappa": cohen_kappa_pairwise_mean(binary),
                     "fleiss_kappa": fleiss_kappa(binary),
                     "krippendorff_alpha": krippendorff_alpha_nominal(binary),
                     "n": int((answers["label"] == label).sum())})
    return pd.DataFrame(rows, columns=["label", "cohen_kappa", "fleiss_kappa",
                                       "krippendorff_alpha", "n"])


def batch_agreement(answers: pd.DataFrame) -> dict[str, float]:
    """The three headline figures for one set of answers."""
    return {"cohen_kappa": cohen_kappa_pairwise_mean(answers),
            "fleiss_kappa": fleiss_kappa(answers),
            "krippendorff_alpha": krippendorff_alpha_nominal(answers)}


def iou_agreement(members: pd.DataFrame) -> pd.DataFrame:
    """IoU-based agreement for geometry from a merge's ``members`` table.

    ``mean_iou``: mean IoU of each object in a merged (quorum) cluster to the fused geometry;
    ``merged_share``: share of objects that ended up in a merged cluster. Per class and per
    annotator, long form ``scope, key, metric, value, n``.
    """
    frames = []
    accepted = members[members["accepted"]]
    for scope, column in (("class", "label"), ("annotator", "annotator_id")):
        iou = accepted.groupby(column, sort=True)["iou_to_fused"].agg(["mean", "size"])
        share = members.groupby(column, sort=True)["accepted"].agg(["mean", "size"])
        for metric, table in (("mean_iou", iou), ("merged_share", share)):
            frames.append(pd.DataFrame({"scope": scope, "key": table.index.astype(str),
                                        "metric": metric, "value": table["mean"].to_numpy(float),
                                        "n": table["size"].to_numpy(np.int64)}))
    return pd.concat(frames, ignore_index=True) if frames else _empty_long()


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame({"scope": pd.Series(dtype=object), "key": pd.Series(dtype=object),
                         "metric": pd.Series(dtype=object), "value": pd.Series(dtype=float),
                         "n": pd.Series(dtype=np.int64)})


def _long(scope: str, key: str, figures: dict[str, float], n: int) -> list[dict]:
    return [{"scope": scope, "key": str(key), "metric": m, "value": v, "n": n}
            for m, v in figures.items()]


def agreement_table(answers: pd.DataFrame | None, consensus: pd.DataFrame | None = None,
                    geometry_members: pd.DataFrame | None = None,
                    gold: pd.DataFrame | None = None) -> pd.DataFrame:
    """All agreement figures in the AGREEMENT_METRICS long form (``scope, key, metric, value, n``).

    ``answers``: ``item_id, annotator_id, label`` (+ optional ``batch_id``) scene answers.
    Batch scope: the three kappa/alpha figures per batch (and ``mean_iou`` of geometry whose
    items belong to it). Class scope: one-vs-rest figures per scene class and IoU figures per
    object class. Annotator scope: mean pairwise kappa with the others, kappa and accuracy vs
    ``consensus`` (``item_id, label``) and vs ``gold``, and IoU figures.
    """
    rows: list[dict] = []
    frames = []
    if answers is not None and len(answers):
        batches = answers["batch_id"] if "batch_id" in answers else pd.Series("all",
                                                                             index=answers.index)
        for batch, part in answers.groupby(batches.to_numpy(), sort=True):
            rows += _long("batch", batch, batch_agreement(part), len(part))
        per_class = class_agreement(answers)
        for record in per_class.to_dict("records"):
            rows += _long("class", record["label"],
                          {m: record[m] for m in ("cohen_kappa", "fleiss_kappa",
                                                  "krippendorff_alpha")}, record["n"])
        pairs = cohen_kappa_pairwise(answers)
        both = pd.concat([pairs.rename(columns={"annotator_a": "annotator_id"}),
                          pairs.rename(columns={"annotator_b": "annotator_id"})])
        per_annotator = both.groupby("annotator_id")["kappa"].agg(["mean", "count"])
        frames.append(pd.DataFrame({"scope": "annotator", "key": per_annotator.index.astype(str),
                                    "metric": "cohen_kappa", "value": per_annotator["mean"],
                                    "n": per_annotator["count"].astype(np.int64)}))
        for name, reference in (("consensus", consensus), ("gold", gold)):
            if reference is None or not len(reference):
                continue
            vs = cohen_kappa_vs_reference(answers, reference)
            for metric in ("kappa", "accuracy"):
                frames.append(pd.DataFrame({"scope": "annotator",
                                            "key": vs["annotator_id"].astype(str),
                                            "metric": f"{metric}_vs_{name}",
                                            "value": vs[metric], "n": vs["n"]}))
    if geometry_members is not None and len(geometry_members):
        frames.append(iou_agreement(geometry_members))
        if answers is not None and "batch_id" in answers:
            batch_of = answers.drop_duplicates("item_id").set_index("item_id")["batch_id"]
            accepted = geometry_members[geometry_members["accepted"]]
            keys = batch_of.reindex(accepted["item_id"]).fillna("unknown").to_numpy()
            by_batch = accepted["iou_to_fused"].groupby(keys).agg(["mean", "size"])
            frames.append(pd.DataFrame({"scope": "batch", "key": by_batch.index.astype(str),
                                        "metric": "mean_iou", "value": by_batch["mean"],
                                        "n": by_batch["size"].astype(np.int64)}))
    if rows:
        frames.insert(0, pd.DataFrame(rows))
    if not frames:
        return _empty_long()
    table = pd.concat([f.reset_index(drop=True) for f in frames], ignore_index=True)
    table["value"] = table["value"].astype(np.float64)
    table["n"] = table["n"].astype(np.int64)
    return table
