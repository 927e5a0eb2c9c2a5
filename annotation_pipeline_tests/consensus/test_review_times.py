"""When review decisions say they were made: never after they were read (issue #22).

The simulated reviewer stamps its decisions within the reviewed day, the same times on every
rerun; intake quarantines a real decision stamped in the future beyond a small clock skew.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd

from annotation_pipeline.consensus.review_decisions import CLOCK_SKEW, decision_files, read_decisions
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.sample_world.reviewer import decision_times, simulate_decisions
from annotation_pipeline_tests.consensus.test_review_loop import DAY, SCENES, gold, tasks

END_OF_DAY = datetime.fromisoformat(f"{DAY}T23:59:59+00:00")


def _times(decisions: list[dict]) -> pd.Series:
    return pd.to_datetime(pd.Series([d["decided_at"] for d in decisions]), utc=True, format="ISO8601")


def test_simulated_decisions_fall_within_the_reviewed_day_and_a_rerun_stamps_the_same_times():
    made = tasks()
    truth = gold().assign(kind="choice")
    first = simulate_decisions(made, truth, SCENES, reviewer_id="rev-01", accuracy=0.9, seed=3)
    again = simulate_decisions(made, truth, SCENES, reviewer_id="rev-01", accuracy=0.9, seed=3)
    assert json.dumps(first) == json.dumps(again)
    when = _times(first)
    # the old reviewer stamped 09:00 the morning after: later than a run early that morning reads them
    assert (when.dt.strftime("%Y-%m-%d") == DAY).all() and (when <= pd.Timestamp(END_OF_DAY)).all()
    assert when.is_monotonic_increasing and when.is_unique


def test_a_big_day_still_ends_before_midnight_and_times_stay_in_order():
    for n, pace_s in ((0, None), (1, None), (30, 120), (400, 43_140 // 400), (50_000, 1)):
        stamped = pd.to_datetime(pd.Series(decision_times(DAY, n), dtype=object), utc=True, format="ISO8601")
        assert len(stamped) == n
        if n:
            assert stamped.iloc[-1] == pd.Timestamp(f"{DAY}T23:59:00Z")
        if pace_s:  # two minutes apart while the day's tasks fit between noon and 23:59, then closer
            assert (stamped.diff().dropna() == pd.Timedelta(seconds=pace_s)).all()


def _read(tmp_path, rows: list[dict], now: datetime):
    returns = tmp_path / "returns"
    returns.mkdir(exist_ok=True)
    (returns / "rev-01.json").write_text(json.dumps(rows))
    return read_decisions(decision_files(returns), returns, tasks(), load_ontology(), partition_date=DAY, now=now)


def test_a_decision_stamped_after_it_was_read_is_quarantined_beyond_the_clock_skew(tmp_path):
    made = tasks()
    scene = made.loc[made["item_id"] == "i1", "review_task_id"].iloc[0]
    box = made.loc[made["item_id"] == "i2", "review_task_id"].iloc[0]
    read_at = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

    def at(when: datetime) -> str:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = [
        {"task_id": scene, "reviewer_id": "rev-01", "decision": "confirm", "decided_at": at(read_at)},
        # a clock a minute ahead: within the skew, accepted
        {"task_id": box, "reviewer_id": "rev-01", "decision": "confirm",
         "decided_at": at(read_at + CLOCK_SKEW - timedelta(minutes=1))},
        # an hour in the future, and with an offset that hides it: both quarantined
        {"task_id": scene, "reviewer_id": "rev-02", "decision": "override", "value": "fog",
         "decided_at": at(read_at + timedelta(hours=1))},
        {"task_id": box, "reviewer_id": "rev-02", "decision": "reject", "decided_at": "2026-11-21T10:00:00+01:00"},
    ]
    intake = _read(tmp_path, rows, read_at)
    assert intake.reconciles and intake.counts()["accepted"] == 2 and intake.counts()["quarantined"] == 2
    assert sorted(intake.decisions["reviewer_id"]) == ["rev-01", "rev-01"]
    future = intake.quarantine
    assert future["reason"].tolist() == ["future_timestamp", "future_timestamp"]
    assert future["annotator_id"].tolist() == ["rev-02", "rev-02"]
    detail = future["detail"].iloc[0]
    assert "\n" not in detail and "2026-11-21T09:00:00Z" in detail and "2026-11-21T08:00:00Z" in detail
    # the same file read a day later: nothing is from the future any more
    later = _read(tmp_path, rows, read_at + timedelta(days=1))
    assert later.counts()["accepted"] == 4 and later.quarantine.empty
