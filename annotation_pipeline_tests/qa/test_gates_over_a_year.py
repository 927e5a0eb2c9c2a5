"""The batch gates judge evidence, not luck: every day of 2026 of the sample world, without Dagster.

Each day is a batch the size of the demo's (43 items after dedupe + the handoff's gold tasks,
overlap 3) labelled by the sample world's simulated vendor, written as its Label Studio
exports, read back by the intake, split by the row suite's rules and judged by the same gate
functions ``batch_health`` uses. To stay fast the year runs as one pass: all days' tasks go
through the simulator, the exports and the row rules at once (everything there is per task or
per row), then the gates are judged day by day. The days' non-gold items are drawn from the
gold set's scenes (the same generator as the daily uploads; rendering 15,000 uploads would take
minutes), and the gold tasks of a day are picked as the handoff picks them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.defs.vendor import HandoffConfig
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.qa.batch_health import annotator_gold_evidence, gold_accuracy_gate, gold_by_annotator
from annotation_pipeline.qa.check_columns import derive_check_columns
from annotation_pipeline.qa.evidence import FAIL, PASS, proportion_evidence
from annotation_pipeline.qa.gold import gold_answer_outcomes
from annotation_pipeline.qa.outcomes import QAThresholds
from annotation_pipeline.qa.row_suite import row_rules
from annotation_pipeline.sample_world.sample_data import generate_gold_set, load_sample_settings
from annotation_pipeline.sample_world.workforce import AnnotatorProfile, simulate_answers, write_label_studio_exports
from annotation_pipeline.vendor.intake import intake_vendor_returns

DEMO_ITEMS = 43          # the demo's default: 40 generated images + 3 real photos, after dedupe
VENDOR = "simvendor"
BATCH = "year-2026"
DAYS = pd.date_range("2026-01-01", "2026-12-31").strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("year")
    generate_gold_set(root)
    gold = pd.read_parquet(root / "gold" / "gold_labels.parquet")
    return root, gold, load_sample_settings()["vendor"]


def _year_of_tasks(gold_ids: np.ndarray, n_gold: int, overlap: int) -> pd.DataFrame:
    """One batch per day, all days as one frame (task ids unique over the year)."""
    parts = []
    for day in DAYS:
        rng = np.random.default_rng([0, int(day.replace("-", ""))])  # the handoff's draw for the day
        picked_gold = gold_ids[rng.choice(len(gold_ids), size=n_gold, replace=False)]
        items = gold_ids[rng.choice(len(gold_ids), size=DEMO_ITEMS, replace=True)]
        parts.append(pd.DataFrame({"day": day, "item_id": np.r_[items, picked_gold],
                                   "is_gold": np.r_[np.zeros(DEMO_ITEMS, bool), np.ones(n_gold, bool)]}))
    tasks = pd.concat(parts, ignore_index=True)
    tasks["task_id"] = (np.arange(len(tasks)) + 1).astype(str)
    tasks["image_file"] = "t" + tasks["task_id"].str.zfill(5) + ".png"
    return tasks.assign(batch_id=BATCH, vendor=VENDOR, image_width=320.0, image_height=240.0, overlap=overlap,
                        ontology_version="1.0.0", guidelines_version="1", model_version="m1")


def _judge_year(root: Path, gold: pd.DataFrame, profiles: list[AnnotatorProfile], tag: str) -> pd.DataFrame:
    """Simulate, export, read back, apply the row rules, then judge each day's gates."""
    ontology, t = load_ontology(), QAThresholds()
    handoff = HandoffConfig()
    tasks = _year_of_tasks(np.array(sorted(gold["item_id"].unique())), handoff.gold_tasks, handoff.overlap)
    truth = gold.merge(tasks[["item_id", "image_file"]], on="item_id")
    answers = simulate_answers(tasks, truth, profiles, handoff.overlap, list(ontology.scene_classes),
                               ontology.object_geometry, seed=2026)
    inbox = root / tag / "inbox"
    files = write_label_studio_exports(answers, tasks, profiles, inbox / BATCH, VENDOR)
    sent = VENDOR_TASKS.conform(tasks)
    intake = intake_vendor_returns(sorted(files), inbox, sent, ontology, vendor=VENDOR)

    a = intake.annotations.reset_index(drop=True)
    checks = derive_check_columns(a, sent, ontology)
    failing = np.logical_or.reduce([rule.failing(checks) for rule in row_rules(ontology, t)])
    day_of_task = tasks.set_index("task_id")["day"]
    a["day"] = a["task_id"].map(day_of_task).to_numpy()
    accepted = a[~failing]
    # the simulator writes well-formed exports: every record reaches the row rules
    assert intake.quarantine.empty, intake.quarantine["reason"].value_counts()
    received = a["day"].value_counts()
    quarantined = a.loc[failing, "day"].value_counts()

    by_day = accepted.assign(annotator_id=accepted["day"] + "|" + accepted["annotator_id"])
    elements = gold_answer_outcomes(by_day, gold, iou_threshold=t.gold_iou)
    per_annotator = gold_by_annotator(elements)
    per_annotator["day"] = per_annotator["annotator_id"].str[:10]
    per_annotator["annotator"] = per_annotator["annotator_id"].str[11:]
    scene_answers = accepted[(accepted["kind"] == "choice") & ~accepted["is_gold"].to_numpy(bool)] \
        .drop_duplicates(["task_id", "annotator_id"]).groupby("day").size()
    rows = []
    for day, mine in per_annotator.groupby("day"):
        gate = gold_accuracy_gate(mine, t)
        judged = annotator_gold_evidence(mine, t)
        share = proportion_evidence(int(quarantined.get(day, 0)), int(received[day]), threshold=t.max_quarantine_share,
                                    confidence=t.gate_confidence, direction="at_most")
        rows.append({"day": day, "gold_gate": gate.decision, "gold_estimate": gate.estimate, "gold_lower": gate.lower,
                     "gold_upper": gate.upper, "quarantine_gate": share.decision,
                     "complete": scene_answers.get(day, 0) >= DEMO_ITEMS * handoff.overlap,
                     "flagged": set(judged.loc[judged["decision"] == FAIL, "annotator"])})
    return pd.DataFrame(rows)


@pytest.mark.slow  # ~3.5 min on a loaded 2-core machine: the Label Studio export/intake round trip of a year
def test_the_sample_world_passes_every_gate_on_every_day_of_2026_and_its_spammer_is_flagged(world):
    root, gold, vendor = world
    profiles = [AnnotatorProfile.from_dict(p) for p in vendor["annotators"]]
    spammers = {p.id for p in profiles if p.spammer}
    days = _judge_year(root, gold, profiles, "sample")

    assert len(days) == len(DAYS)
    undecided_or_failed = days[days["gold_gate"] != PASS]
    assert undecided_or_failed.empty, undecided_or_failed
    assert (days["quarantine_gate"] == PASS).all(), days[days["quarantine_gate"] != PASS]
    assert days["complete"].all()
    assert all(flagged == spammers for flagged in days["flagged"]), days[days["flagged"] != {*spammers}]


@pytest.mark.slow
def test_a_batch_whose_annotators_mostly_miss_gold_fails_on_every_day_of_2026(world):
    root, gold, vendor = world
    profiles = [AnnotatorProfile.from_dict(p) for p in vendor["annotators"]]
    spammer = next(p for p in profiles if p.spammer)
    # four of five annotators answer at random: most of every day's answers miss gold (with three,
    # the two good ones carry half the gold answers on some days, and the median annotator is good)
    careless = [p if i < 1 else replace(spammer, id=p.id) for i, p in enumerate(profiles)]
    days = _judge_year(root, gold, careless, "careless")

    assert len(days) == len(DAYS)
    assert (days["gold_gate"] == FAIL).all(), days[days["gold_gate"] != FAIL]
    assert (days["gold_upper"] < QAThresholds().min_gold_accuracy).all()
