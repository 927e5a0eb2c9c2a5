"""Active learning sends the vendor items the model doubts, spread over what the day holds,
campaign items first, never more than the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy as scipy_entropy

from annotation_pipeline.contracts import AUTO_ACCEPTED_LABELS, LABELING_QUEUE, PRELABELS, RELABEL_CAMPAIGN
from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.prelabel import labeling_queue
from annotation_pipeline.defs.resources import build_resources
from annotation_pipeline.prelabel.active_learning import (
    build_labeling_queue,
    entropy_uncertainty,
    image_embedding,
    margin_uncertainty,
    prelabel_uncertainty,
    select_uncertain_diverse,
)
from annotation_pipeline.sample_world.sample_data import render_scene
from annotation_pipeline_tests.prelabel.day_items import DAY, anonymized_items_asset, save_day_scenes

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_active_learning.py"


def _three_clusters(per_cluster: int = 20, seed: int = 0):
    """Three tight, far-apart clusters; cluster 0 holds every one of the most uncertain items."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cluster = np.repeat(np.arange(3), per_cluster)
    features = centres[cluster] + rng.normal(0, 0.3, (len(cluster), 2))
    uncertainty = np.where(cluster == 0, rng.uniform(0.8, 1.0, len(cluster)), rng.uniform(0.2, 0.5, len(cluster)))
    return features, uncertainty, cluster


def test_the_selector_picks_from_every_cluster_not_only_the_most_uncertain_one():
    features, uncertainty, cluster = _three_clusters(per_cluster=5)  # all 15 on the shortlist of 5 x 3
    picked = select_uncertain_diverse(uncertainty, features, budget=3).index
    assert sorted(cluster[picked]) == [0, 1, 2]
    # uncertainty alone would have sent three items of cluster 0
    assert set(cluster[np.argsort(-uncertainty)[:3]]) == {0}
    # without the shortlist, diversity reaches every cluster even when one holds 20 doubtful items
    features, uncertainty, cluster = _three_clusters(per_cluster=20)
    picked = select_uncertain_diverse(uncertainty, features, budget=3, shortlist=None).index
    assert sorted(cluster[picked]) == [0, 1, 2]


def test_a_sure_item_is_not_bought_for_being_far_away_while_doubtful_ones_are_left():
    rng = np.random.default_rng(1)
    features = np.vstack([rng.normal(0, 1, (30, 2)), [[100.0, 100.0]]])  # one far-off outlier
    uncertainty = np.append(rng.uniform(0.6, 1.0, 30), 0.05)
    assert 30 not in select_uncertain_diverse(uncertainty, features, budget=5).index
    assert 30 in select_uncertain_diverse(uncertainty, features, budget=5, shortlist=None).index


def test_within_each_cluster_the_selector_prefers_its_most_uncertain_items():
    features, uncertainty, cluster = _three_clusters()
    picked = select_uncertain_diverse(uncertainty, features, budget=3, shortlist=None).index
    assert picked[0] == np.argmax(uncertainty)  # nothing chosen yet: the most uncertain first
    for i in picked:  # each pick is among the two most uncertain of its cluster
        same = np.flatnonzero(cluster == cluster[i])
        assert i in same[np.argsort(-uncertainty[same])[:2]]


def test_without_any_diversity_signal_the_selector_takes_the_most_uncertain_within_budget():
    uncertainty = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    selection = select_uncertain_diverse(uncertainty, np.zeros((5, 3)), budget=3)
    assert selection.index.tolist() == [1, 3, 2]
    assert selection.uncertainty_rank.tolist() == [1, 2, 3]


def test_items_like_those_already_labeled_are_passed_over():
    features, uncertainty, cluster = _three_clusters()
    picked = select_uncertain_diverse(uncertainty, features, budget=2, labeled_features=features[cluster == 0],
                                      shortlist=None).index
    assert 0 not in set(cluster[picked])


def test_the_budget_is_respected_and_a_run_is_reproducible():
    rng = np.random.default_rng(3)
    features, uncertainty = rng.normal(size=(500, 8)), rng.uniform(size=500)
    uncertainty[:50] = 0.5  # ties, broken by the seed
    features[:50] = 0.0
    runs = [select_uncertain_diverse(uncertainty, features, budget=40, seed=7).index for _ in range(2)]
    assert len(runs[0]) == 40 and len(set(runs[0])) == 40
    assert runs[0].tolist() == runs[1].tolist()
    assert len(select_uncertain_diverse(uncertainty, features, budget=0).index) == 0
    assert len(select_uncertain_diverse(uncertainty[:5], features[:5], budget=10).index) == 5


def test_margin_and_entropy_agree_with_their_definitions():
    proba = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(margin_uncertainty(proba), [1.0, 0.0, 0.7, 1.0])
    np.testing.assert_allclose(entropy_uncertainty(proba), scipy_entropy(proba.T) / np.log(3), atol=1e-9)


def _prelabels(scores: dict[str, float], boxes: dict[str, list[float]] | None = None) -> pd.DataFrame:
    rows = [{"item_id": i, "kind": "choice", "label": "day", "score": s} for i, s in scores.items()]
    rows += [{"item_id": i, "kind": "box", "label": "car", "score": s, "x_min": 1.0, "y_min": 1.0, "x_max": 5.0,
              "y_max": 5.0} for i, ss in (boxes or {}).items() for s in ss]
    frame = pd.DataFrame(rows).assign(model_version="m")
    for column in ("x_min", "y_min", "x_max", "y_max"):
        frame[column] = frame.get(column, np.nan)
    return PRELABELS.conform(frame)


def test_item_uncertainty_weighs_the_scene_and_its_boxes():
    doubt = prelabel_uncertainty(_prelabels({"sure": 0.99, "unsure": 0.4, "doubtful_boxes": 0.99},
                                            {"doubtful_boxes": [0.55, 0.6]}))
    assert doubt["unsure"] == 1.0
    assert doubt["sure"] == pytest.approx(0.02)
    assert doubt["doubtful_boxes"] > 0.3 > doubt["sure"]


def _campaign(*item_ids: str) -> pd.DataFrame:
    return RELABEL_CAMPAIGN.conform(pd.DataFrame({
        "campaign_id": "drift-2026-11-20", "item_id": list(item_ids), "image_path": "p", "landing_file": "l",
        "model_version": "m", "predicted_label": "day", "confidence": 0.9, "reason": "r",
        "priority": np.arange(1, len(item_ids) + 1)}))


def test_campaign_items_go_first_in_campaign_order_and_count_against_the_budget():
    features, uncertainty, _ = _three_clusters(per_cluster=5)
    ids = [f"item{k}" for k in range(len(uncertainty))]
    calm = [ids[k] for k in np.argsort(uncertainty)[:2]]  # the two items the model is surest of
    queue = build_labeling_queue(ids, uncertainty, features, DAY, budget=4,
                                 campaign_items=_campaign(calm[1], calm[0], "not-today"))
    LABELING_QUEUE.validate(queue)
    assert len(queue) == 4 and queue["priority"].tolist() == [1, 2, 3, 4]
    assert queue["item_id"].head(2).tolist() == [calm[1], calm[0]]
    assert queue["reason"].head(2).eq("relabel campaign drift-2026-11-20").all()
    assert queue["campaign_id"].isna().tolist() == [False, False, True, True]
    picked = queue["item_id"].iloc[2:]
    assert picked.notna().all() and not set(picked) & set(calm)
    assert queue["uncertainty_rank"].iloc[2:].notna().all()
    assert queue["reason"].iloc[2:].str.contains("uncertainty #").all()
    assert queue["reason"].iloc[2:].str.contains("diversity #").all()  # campaign items are the first centres
    assert build_labeling_queue(ids, uncertainty, features, DAY, budget=1,
                                campaign_items=_campaign(calm[1], calm[0]))["item_id"].tolist() == [calm[1]]
    assert build_labeling_queue(ids, uncertainty, features, DAY, budget=0).empty


def test_the_queue_explains_each_pick():
    features, uncertainty, _ = _three_clusters(per_cluster=5)
    queue = build_labeling_queue([f"i{k}" for k in range(15)], uncertainty, features, DAY, budget=3)
    first, later = queue.iloc[0], queue.iloc[1:]
    assert first["uncertainty_rank"] == 1 and pd.isna(first["diversity_rank"])
    assert "most uncertain" in first["reason"]
    assert later["diversity_rank"].notna().all() and later["reason"].str.contains("from the nearest item").all()


def test_image_embedding_puts_alike_scenes_closer_than_different_ones():
    rng = np.random.default_rng(5)
    day1, day2, night = (image_embedding(np.asarray(render_scene(rng, (320, 240), scene)[0]))
                         for scene in ("day", "day", "night"))
    assert np.linalg.norm(day1 - day2) < np.linalg.norm(day1 - night)
    assert np.linalg.norm(day1) == pytest.approx(np.sqrt(2))


_anonymized_items = anonymized_items_asset(6)


@dg.asset(name="prelabels", partitions_def=daily_partitions)
def _prelabels_asset() -> pd.DataFrame:
    return _prelabels({f"item{k}": 0.55 + 0.07 * k for k in range(6)})


@dg.asset(name="auto_accepted_labels", partitions_def=daily_partitions)
def _nothing_auto_accepted() -> pd.DataFrame:
    return AUTO_ACCEPTED_LABELS.empty()


def test_the_labeling_queue_asset_materializes_with_its_reasons(tmp_path):
    root = save_day_scenes(tmp_path / "root", 6)
    result = dg.materialize([_anonymized_items, _prelabels_asset, _nothing_auto_accepted, labeling_queue], partition_key=DAY,
                            resources=build_resources("local", root),
                            run_config={"ops": {"labeling_queue": {"config": {"budget": 3}}}})
    assert result.success
    queue = result.output_for_node("labeling_queue")
    LABELING_QUEUE.validate(queue)
    assert len(queue) == 3 and queue["item_id"].iloc[0] == "item0"  # score 0.55: the most uncertain
    meta = result.asset_materializations_for_node("labeling_queue")[0].metadata
    assert meta["candidates"].value == 6 and meta["selected"].value == 3 and meta["from_active_learning"].value == 3
    assert "uncertainty #1 of 6" in meta["why_selected"].value


def test_the_benchmark_json_line_parses_at_small_sizes():
    proc = subprocess.run([sys.executable, str(BENCH), "--json", "--pool-scenes", "30", "--test-scenes", "15",
                           "--seeds", "1", "--seed-labels", "10", "--batch", "10", "--max-labels", "40"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"labels_to_target_al", "labels_to_target_random", "target_accuracy"} <= set(result)
    assert len(result["curve_al"]) == len(result["labels"]) == 4


def test_a_day_without_candidates_gives_an_empty_queue():
    queue = build_labeling_queue([], np.zeros(0), np.zeros((0, 1)), DAY, budget=5)
    assert queue.empty
    LABELING_QUEUE.validate(queue)
