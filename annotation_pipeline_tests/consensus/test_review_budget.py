"""The review budget is a hard cap on the share of the day's consensus candidates queued.

The denominator is what consensus decides on (scene items, merged objects, below-quorum clusters
not dismissed automatically), counted here from the output tables, not from ``counts``: a cluster
dismissed without a reviewer must not raise the budget (the demo of 2026-12-06 queued 29 of its
149 candidates, 19 %, against 15 %, because 72 clusters drawn only by its spammer were counted).
"""

from __future__ import annotations

import math

import pytest

from annotation_pipeline.consensus.review import ReviewPolicy
from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.sample_world.crowd_day import sample_world_day
from annotation_pipeline_tests.consensus.test_review import crowd_with_a_spammer


def _candidates_and_queued(result) -> tuple[int, int]:
    queue = result.review_queue
    open_rows = int(queue["status"].isin(["queued", "deferred"]).sum())
    return len(result.labels) + open_rows, int((queue["status"] == "queued").sum())


@pytest.mark.parametrize("share", [0.05, 0.15, 0.3])
def test_dismissed_clusters_do_not_raise_the_budget(share):
    annotations, tasks, gold = crowd_with_a_spammer()  # 40 spam boxes, all dismissed
    result = run_consensus(annotations, tasks, gold, policy=ReviewPolicy(budget_share=share))
    candidates, queued = _candidates_and_queued(result)
    assert result.counts["clusters_dismissed_automatically"] >= 40
    assert result.counts["consensus_candidates"] == candidates
    assert queued <= math.floor(share * candidates + 1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_no_generated_day_queues_more_than_its_budget(seed):
    annotations, tasks, gold, _ = sample_world_day(seed, n_images=30)
    policy = ReviewPolicy()
    result = run_consensus(annotations, tasks, gold, policy=policy)
    candidates, queued = _candidates_and_queued(result)
    assert queued <= math.floor(policy.budget_share * candidates + 1e-9), (queued, candidates)
    assert result.counts["review_budget"] == policy.budget(candidates)
