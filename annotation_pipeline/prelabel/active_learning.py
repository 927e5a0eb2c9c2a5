"""Active learning under a budget: items the model doubts, spread over the feature space.

Uncertainty alone sends a vendor twenty near-copies of the same confusing scene: each teaches
the model what the first one did. So the selector trades uncertainty against diversity with a
greedy, uncertainty-weighted k-center (core-set) rule: the next item is the one with the largest

    uncertainty x distance to the nearest item already chosen (or already labeled),

so an item is picked when the model doubts it *and* nothing like it is in the batch yet. The
first pick, with nothing chosen, is the most uncertain item; an item identical to one already
chosen scores zero. Only the most uncertain candidates (``SHORTLIST`` x budget) compete, so a
sure item is never bought for being far from everything else. ``benchmarks/bench_active_learning.py`` measures what this buys over
random sampling on the sample world (labels to reach a target accuracy).

The selector knows nothing of images or models: it takes an uncertainty per candidate (from
:func:`margin_uncertainty` / :func:`entropy_uncertainty` of class probabilities, or
:func:`top_score_uncertainty` of stored pre-label scores) and a feature matrix in which
Euclidean distance means "looks alike" (:func:`image_embedding` for the daily queue). Work is
vectorized over candidates; the only Python loop is over the ``budget`` greedy picks.

Items a drift campaign landed keep their priority: they go first, in the campaign's order,
count against the budget, and count as already chosen for the diversity term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from annotation_pipeline.contracts import LABELING_QUEUE

# Thumbnail the daily queue's embedding is computed on: enough for layout (HOG on 16 px cells)
# and colour, small enough that a day's items embed in well under a second per hundred.
EMBEDDING_SIZE = (64, 48)
COLOUR_BINS = 4  # per RGB channel: 64 joint bins
# Candidates per pick that compete on diversity: the 5 x budget most uncertain. Diverse mini-batch
# active learning (Zhdanov 2019) pre-filters the same way (with 10); without it, far-off items
# the model is sure of win on distance alone (with the labeled set as centres, that cost labels
# in an early run of bench_active_learning.py: 79 instead of 71 at batches of 10).
SHORTLIST = 5.0


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2 probability) per row of an (n, classes) array: 1 = a coin flip."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] < 2:
        return np.zeros(len(proba))
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


def entropy_uncertainty(proba: np.ndarray) -> np.ndarray:
    """Entropy of each row of an (n, classes) array, divided by log(classes): in [0, 1]."""
    proba = np.clip(np.asarray(proba, dtype=float), 1e-12, 1.0)
    if proba.ndim != 2 or proba.shape[1] < 2:
        return np.zeros(len(proba))
    return np.clip(-(proba * np.log(proba)).sum(1) / np.log(proba.shape[1]), 0.0, 1.0)


def top_score_uncertainty(top_scores: np.ndarray) -> np.ndarray:
    """Margin uncertainty when only the top class's probability p is stored (pre-labels).

    The runner-up has at most min(p, 1 - p), so the margin is at least max(0, 2p - 1): we take
    that worst case, 1 - margin = min(1, 2 (1 - p)). Monotone in p, 0 at p = 1, 1 below p = 0.5.
    """
    return np.clip(2.0 * (1.0 - np.asarray(top_scores, dtype=float)), 0.0, 1.0)


def prelabel_uncertainty(prelabels: pd.DataFrame) -> pd.Series:
    """Per item (PRELABELS rows): the mean of the scene's and the objects' margin uncertainty.

    The scene choice and the item's boxes weigh half each (an item without boxes: its scene
    only), so a confident scene with doubtful boxes still reaches a vendor.
    """
    doubt = pd.Series(top_score_uncertainty(prelabels["score"].to_numpy()), index=prelabels.index)
    is_scene = prelabels["kind"].eq("choice")
    scene = doubt[is_scene].groupby(prelabels.loc[is_scene, "item_id"]).max()
    objects = doubt[~is_scene].groupby(prelabels.loc[~is_scene, "item_id"]).mean()
    items = pd.Index(prelabels["item_id"].unique(), name="item_id")
    both = pd.concat([scene.reindex(items), objects.reindex(items)], axis=1)
    return both.mean(axis=1, skipna=True).fillna(1.0).rename("uncertainty")


def image_embedding(rgb: np.ndarray) -> np.ndarray:
    """A generic look-alike space for images: HOG of a grey thumbnail + a joint colour histogram.

    Both halves have unit length (HOG's blocks are L2-normalized; the histogram is taken as
    square roots of shares, the Hellinger embedding), so layout and colour weigh the same and
    the distance between two images is at most 2. Nothing in it knows the sample scenes.
    """
    from skimage.feature import hog  # a second of imports, only where images are embedded

    thumb = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB").resize(EMBEDDING_SIZE, Image.BILINEAR)
    pixels = np.asarray(thumb)
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    layout = hog(grey, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), feature_vector=True)
    codes = (pixels // (256 // COLOUR_BINS)).reshape(-1, 3).astype(np.int64)
    joint = codes[:, 0] * COLOUR_BINS ** 2 + codes[:, 1] * COLOUR_BINS + codes[:, 2]
    colour = np.sqrt(np.bincount(joint, minlength=COLOUR_BINS ** 3) / len(joint))
    layout = layout / max(float(np.linalg.norm(layout)), 1e-12)
    return np.concatenate([layout, colour]).astype(np.float64)


@dataclass(frozen=True)
class Selection:
    """What the selector picked, in pick order (positions into the candidates)."""

    index: np.ndarray             # candidate positions, first pick first
    uncertainty_rank: np.ndarray  # 1 = the most uncertain of all candidates
    diversity_rank: np.ndarray    # at pick time, 1 = farthest from everything chosen; 0 = nothing chosen yet
    distance: np.ndarray          # at pick time, to the nearest chosen or labeled item (inf: none yet)
    shortlisted: int = 0          # candidates that competed on diversity (the most uncertain)


def _sq_distances(features: np.ndarray, sq_norms: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.maximum(sq_norms - 2.0 * features @ centre + float(centre @ centre), 0.0)


def _as_rows(features: np.ndarray, n: int) -> np.ndarray:
    """``features`` as an (n, f) float array; n = 0 (a day with no candidates) keeps its width."""
    x = np.asarray(features, dtype=float)
    if n == 0:
        return x.reshape(0, x.shape[-1] if x.ndim > 1 else 1)
    return x.reshape(n, -1)


def select_uncertain_diverse(uncertainty: np.ndarray, features: np.ndarray, budget: int, *,
                             labeled_features: np.ndarray | None = None, shortlist: float | None = SHORTLIST,
                             seed: int = 0) -> Selection:
    """Greedy uncertainty-weighted k-center: ``budget`` picks among the candidates.

    ``uncertainty`` (n,) >= 0, ``features`` (n, f); ``labeled_features`` (m, f) are items
    already labeled or queued, which new picks keep away from. Only the ``shortlist x budget``
    most uncertain candidates compete (None: all), so diversity chooses among informative items
    rather than buying sure ones for being far away. Ties (equal score, then equal uncertainty)
    are broken by a permutation drawn from ``seed``, so a run is reproducible.
    """
    u = np.nan_to_num(np.asarray(uncertainty, dtype=float), nan=0.0).clip(min=0.0)
    x = _as_rows(features, len(u))
    n, k = len(u), int(min(max(budget, 0), len(u)))
    tiebreak = np.random.default_rng(seed).permutation(n)
    by_doubt = np.lexsort((tiebreak, -u))  # descending uncertainty, ties by the seeded permutation
    u_rank = np.empty(n, dtype=np.int64)
    u_rank[by_doubt] = np.arange(1, n + 1)
    short = by_doubt if shortlist is None else by_doubt[:max(int(np.ceil(shortlist * k)), k)]
    nearest = np.full(len(short), np.inf)
    if labeled_features is not None and len(labeled_features) and len(short):
        centres = np.asarray(labeled_features, dtype=float).reshape(len(labeled_features), -1)
        xs = x[short]
        cross = np.einsum("ij,ij->i", xs, xs)[:, None] - 2.0 * xs @ centres.T \
            + np.einsum("ij,ij->i", centres, centres)[None, :]
        nearest = np.sqrt(np.maximum(cross, 0.0).min(axis=1))
    local, d_rank, d_at_pick = _greedy_k_center(u[short], x[short], k, nearest, u_rank[short])
    picks = short[local]
    return Selection(picks, u_rank[picks], d_rank, d_at_pick, len(short))


def _greedy_k_center(u: np.ndarray, x: np.ndarray, k: int, nearest: np.ndarray,
                     u_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k picks maximizing u x distance to the nearest centre (inf: no centre yet, then u alone)."""
    sq_norms = np.einsum("ij,ij->i", x, x)
    picks = np.empty(k, dtype=np.int64)
    d_rank, d_at_pick = np.zeros(k, dtype=np.int64), np.empty(k)
    open_ = np.ones(len(u), dtype=bool)
    for step in range(k):
        have_centres = np.isfinite(nearest).any()
        score = np.where(open_, u * nearest if have_centres else u, -np.inf)
        tied = np.flatnonzero(score >= score.max() - 1e-12 * max(abs(score.max()), 1.0)) if have_centres \
            else np.flatnonzero(score == score.max())
        best = tied[np.argmin(u_rank[tied])]  # among ties: the most uncertain, then the seed
        picks[step], d_at_pick[step] = best, nearest[best]
        if have_centres:
            d_rank[step] = 1 + int((nearest[open_] > nearest[best]).sum())
        open_[best] = False
        nearest = np.minimum(nearest, np.sqrt(_sq_distances(x, sq_norms, x[best])))
    return picks, d_rank, d_at_pick


def _campaign_order(item_ids: pd.Index, campaign_items: pd.DataFrame | None) -> pd.DataFrame:
    """Today's items that a campaign landed, in campaign priority order (campaign_id, priority)."""
    if campaign_items is None or campaign_items.empty:
        return pd.DataFrame({"campaign_id": pd.Series(dtype="string"), "priority": pd.Series(dtype=float)},
                            index=pd.Index([], name="item_id"))
    campaign = campaign_items.drop_duplicates("item_id").set_index("item_id")
    campaign = campaign[campaign.index.isin(item_ids)]
    order = pd.DataFrame({"campaign_id": campaign["campaign_id"].astype("string"),
                          "priority": campaign["priority"].astype(float), "pos": np.arange(len(campaign))},
                         index=campaign.index)
    return order.sort_values(["priority", "pos"], kind="stable")[["campaign_id", "priority"]]


def build_labeling_queue(item_ids: list[str] | pd.Index, uncertainty: np.ndarray, features: np.ndarray,
                         partition_date: str, budget: int, campaign_items: pd.DataFrame | None = None,
                         seed: int = 0) -> pd.DataFrame:
    """LABELING_QUEUE rows: campaign items first, then uncertain-and-diverse picks, up to ``budget``.

    ``item_ids``, ``uncertainty`` and ``features`` are aligned (one row per candidate item).
    Each row says why it is there: its campaign, or its uncertainty rank among the day's
    candidates and its diversity rank when it was picked.
    """
    ids = pd.Index(pd.Series(item_ids, dtype="string"), name="item_id")
    u = np.nan_to_num(np.asarray(uncertainty, dtype=float), nan=0.0)
    x = _as_rows(features, len(ids))
    budget = max(int(budget), 0)
    campaign = _campaign_order(ids, campaign_items).head(budget)
    in_campaign = ids.isin(campaign.index)
    rest = np.flatnonzero(~in_campaign)
    chosen = ids.get_indexer(campaign.index)
    sel = select_uncertain_diverse(u[rest], x[rest], budget - len(campaign),
                                   labeled_features=x[chosen] if len(chosen) else None, seed=seed)
    picked = rest[sel.index]
    n_rest = len(rest)
    reasons = [_pick_reason(ur, dr, d, n_rest, sel.shortlisted)
               for ur, dr, d in zip(sel.uncertainty_rank, sel.diversity_rank, sel.distance, strict=True)]
    queue = pd.DataFrame({
        "item_id": np.concatenate([campaign.index.to_numpy(dtype=object), ids.to_numpy(dtype=object)[picked]]),
        "partition_date": partition_date,
        "priority": np.arange(1, len(campaign) + len(picked) + 1),
        "uncertainty": np.concatenate([u[chosen], u[picked]]),
        "reason": ["relabel campaign " + str(c) for c in campaign["campaign_id"]] + reasons,
        "campaign_id": pd.array(list(campaign["campaign_id"]) + [pd.NA] * len(picked), dtype="string"),
        "uncertainty_rank": pd.array([pd.NA] * len(campaign) + sel.uncertainty_rank.tolist(), dtype="Int64"),
        "diversity_rank": pd.array([pd.NA] * len(campaign) + [r if r else pd.NA for r in sel.diversity_rank.tolist()],
                                   dtype="Int64"),
    })
    return LABELING_QUEUE.conform(queue)


def _pick_reason(u_rank: int, d_rank: int, distance: float, n: int, shortlisted: int) -> str:
    doubt = f"uncertainty #{u_rank} of {n}"
    if not d_rank:
        return f"{doubt}: the most uncertain item, picked first"
    return (f"{doubt}, diversity #{d_rank} of the {shortlisted} most uncertain "
            f"({distance:.2f} from the nearest item already queued)")


def mean_nearest_distance(features: np.ndarray) -> float:
    """Mean distance from each row to its nearest other row: how spread out a batch is (0 = copies)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=float)
    if len(x) < 2:
        return 0.0
    distances, _ = NearestNeighbors(n_neighbors=2).fit(x).kneighbors(x)
    return float(distances[:, 1].mean())
