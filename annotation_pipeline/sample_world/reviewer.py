"""A simulated reviewer for the embedded default: decides a day's review tasks from the sample truth.

Like the simulated workforce, the reviewer "sees" an image through the ground truth the
sample-data generator kept aside (and the gold set's known answers); nothing else in the
pipeline reads it. The right decision on a task is:

- a scene: ``confirm`` when the candidate is the true scene, else ``override`` with it;
- an object: the true object of the item that overlaps the candidate most (IoU at least 0.5):
  ``confirm`` when it has the candidate's class, ``override`` with its class when not,
  ``reject`` when no true object is there.

With probability ``accuracy`` the reviewer gives the right decision; otherwise a wrong one
(a scene overridden with another class or a wrong candidate confirmed; an object's confirm
and reject swapped). Decisions are written as one decision file per reviewer.

The reviewer works the afternoon and evening of the day under review: every ``decided_at``
falls within that day, the last one at 23:59 UTC. A daily partition is processed only once
its day has ended, so these times are in the past whenever the decisions are read (intake
quarantines decisions stamped after they were read, ``consensus.review_decisions``), and they
depend on the day and the number of tasks alone, so a rerun writes the same bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.consensus.boxes import pair_iou
from annotation_pipeline.consensus.review_decisions import objects
from annotation_pipeline.layout import DataLayout, ReviewFolder

COORDS = ["x_min", "y_min", "x_max", "y_max"]
MATCH_IOU = 0.5
DECISION_PACE_S = 120                  # seconds between two decisions of the simulated reviewer
REVIEW_SPAN_S = 12 * 3600 - 60         # noon to 23:59: the pace tightens when the tasks would not fit
LAST_DECISION_BEFORE_MIDNIGHT_S = 60   # the last decision at 23:59:00 of the reviewed day
REASONS = {"confirm": "the candidate matches the image", "override": "the image shows {value}, not {label}",
           "reject": "nothing of that class is there"}


def sample_truth(root: Path) -> pd.DataFrame:
    """The sample world's answers: every generated day's truth and the gold set's labels."""
    layout = DataLayout(root)
    frames = [pd.read_parquet(p) for p in sorted(layout.sample_truth.glob("*.parquet"))]
    if layout.gold_labels.is_file():
        frames.append(pd.read_parquet(layout.gold_labels))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["item_id", "kind", "label"])


def right_answers(tasks: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per task: the right ``decision`` and ``value`` (the true class; empty for a reject)."""
    scenes = truth[truth["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
    true_scene = objects(scenes.reindex(tasks["item_id"]))
    object_tasks = tasks[tasks["kind"] != "choice"].reset_index(drop=True).assign(
        task_row=np.flatnonzero((tasks["kind"] != "choice").to_numpy()))
    pairs = object_tasks[["task_row", "item_id", *COORDS]].merge(
        truth[truth["kind"] != "choice"][["item_id", "label", *COORDS]], on="item_id", suffixes=("", "_t"))
    true_object = np.full(len(tasks), None, dtype=object)
    if len(pairs):
        n = len(pairs)
        coords = np.concatenate([pairs[COORDS].to_numpy(float), pairs[[c + "_t" for c in COORDS]].to_numpy(float)])
        pairs["iou"] = pair_iou(np.ascontiguousarray(coords.T), np.arange(n), np.arange(n) + n)
        best = pairs[pairs["iou"] >= MATCH_IOU].sort_values("iou", ascending=False).drop_duplicates("task_row")
        true_object[best["task_row"].to_numpy()] = objects(best["label"])
    is_scene = (tasks["kind"] == "choice").to_numpy()
    value = np.where(is_scene, true_scene, true_object)
    label = objects(tasks["label"])
    decision = np.where(pd.isna(value), "reject", np.where(value == label, "confirm", "override"))
    return pd.DataFrame({"decision": decision, "value": np.where(decision == "override", value, None)},
                        index=tasks.index)


def decision_times(partition_date: str, n: int) -> list[str]:
    """``n`` ISO 8601 UTC times within the day ``partition_date``, in order, the last at 23:59:00.

    Two minutes apart (a reviewer's pace), closer together when that would start before noon,
    never less than a second apart: with the day's review budget (tens of tasks) that is an
    afternoon's work, and even an unbudgeted day stays on or before its last minute.
    """
    last = datetime.combine(date.fromisoformat(partition_date) + timedelta(days=1), datetime.min.time(), UTC) \
        - timedelta(seconds=LAST_DECISION_BEFORE_MIDNIGHT_S)
    step = max(1, min(DECISION_PACE_S, REVIEW_SPAN_S // max(n, 1)))
    return [(last - timedelta(seconds=step * (n - 1 - k))).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(n)]


def simulate_decisions(tasks: pd.DataFrame, truth: pd.DataFrame, scene_classes: list[str], *, reviewer_id: str,
                       accuracy: float, seed: int) -> list[dict]:
    """One decision object per task (the decision file format of ``consensus.review_decisions``)."""
    rng = np.random.default_rng(seed)
    right = right_answers(tasks, truth)
    decision, value = objects(right["decision"]), objects(right["value"])
    wrong = rng.random(len(tasks)) >= accuracy
    label = objects(tasks["label"])
    is_scene = (tasks["kind"] == "choice").to_numpy()
    classes = np.asarray(scene_classes, dtype=object)
    other = classes[rng.integers(0, len(classes), len(tasks))] if len(classes) else label
    # a wrong scene answer: confirm a wrong candidate, or override a right one with another class
    scene_slip = np.where(decision == "confirm", "override", "confirm")
    object_slip = np.where(decision == "reject", "confirm", "reject")
    slip = np.where(is_scene, scene_slip, object_slip)
    slip_value = np.where(is_scene & (slip == "override"), np.where(other == label, None, other), None)
    slip = np.where((slip == "override") & pd.isna(slip_value), "confirm", slip)  # drew the same class
    decision = np.where(wrong, slip, decision)
    value = np.where(wrong, slip_value, value)
    decided_at = decision_times(str(tasks["partition_date"].iloc[0]) if len(tasks) else "2026-01-01", len(tasks))
    out = []
    for k, task in enumerate(tasks.itertuples(index=False)):  # JSON objects, one per task
        entry = {"task_id": task.review_task_id, "reviewer_id": reviewer_id, "decision": decision[k],
                 "decided_at": decided_at[k],
                 "reason": REASONS[decision[k]].format(value=value[k], label=task.label)}
        if decision[k] == "override":
            entry["value"] = value[k]
        out.append(entry)
    return out


def simulate_reviewer_returns(root: Path, tasks: pd.DataFrame, folder: ReviewFolder, scene_classes: list[str], *,
                              reviewer_id: str, accuracy: float, seed: int) -> Path:
    """The simulated reviewer decides every task of ``folder`` and writes ``returns/<reviewer_id>.json``."""
    decisions = simulate_decisions(tasks, sample_truth(root), scene_classes, reviewer_id=reviewer_id,
                                   accuracy=accuracy, seed=seed)
    path = folder.returns / f"{reviewer_id}.json"
    content = json.dumps(decisions, indent=1).encode()
    if not path.is_file() or path.read_bytes() != content:
        write_bytes_atomic(path, content)
    return path
