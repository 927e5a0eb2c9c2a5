"""A vendor pilot in the sample world: the same items to two vendors, judged by the real intake and QA.

The practice the program manager follows before a contract: send a small set of items (hidden
gold among them) to several vendors, then compare quality against cost. Here the sample world's
vendor and its ``pilot_vendor`` (sample_settings.json: a cheaper, less accurate workforce with
its own prices) both answer the same tasks of a delivered batch; their Label Studio exports go
through ``vendor.returns.process_vendor_returns`` (intake, row suite, batch health) as any
return would, consensus is run on both vendors' answers together, and
``vendor.scorecards.pilot_comparison`` puts the two side by side. Everything happens in a
temporary folder: the pilot leaves the data root as it found it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from annotation_pipeline.consensus.stage import run_consensus
from annotation_pipeline.contracts import GOLD_LABELS, VENDOR_TASKS
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.sample_world.sample_data import load_sample_settings
from annotation_pipeline.sample_world.workforce import (
    AnnotatorProfile,
    seed_for_batch,
    simulate_answers,
    write_label_studio_exports,
)
from annotation_pipeline.vendor.returns import process_vendor_returns
from annotation_pipeline.vendor.scorecards import PILOT_COLUMNS, TaskPrices, pilot_comparison


def pilot_tasks(tasks: pd.DataFrame, n_items: int) -> pd.DataFrame:
    """The pilot's share of a delivered batch: its first ``n_items`` tasks with the gold among
    them kept (gold is what quality is judged on), taken from the batch's latest batch."""
    latest = tasks[tasks["batch_id"] == max(tasks["batch_id"].unique())]
    ordered = latest.sort_values("task_id", key=lambda s: s.astype(int))
    return ordered.head(n_items).reset_index(drop=True)


def simulate_pilot(root: Path, tasks: pd.DataFrame, *, partition_date: str, n_items: int | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """``pilot_comparison`` of the sample world's two vendors on the same tasks of ``tasks``
    (VENDOR_TASKS of a day); empty when there is no batch."""
    if not len(tasks):
        return pd.DataFrame(columns=PILOT_COLUMNS)
    settings = load_sample_settings()
    pilot = settings["pilot_vendor"]
    vendors = {settings["vendor"]["name"]: ([AnnotatorProfile.from_dict(p) for p in settings["vendor"]["annotators"]],
                                            TaskPrices()),
               pilot["name"]: ([AnnotatorProfile.from_dict(p) for p in pilot["annotators"]],
                               TaskPrices(**pilot["prices"]))}
    chosen = pilot_tasks(tasks, n_items or int(pilot["pilot_items"]))
    layout, ontology = DataLayout(root), load_ontology()
    gold = pd.read_parquet(layout.gold_labels) if layout.gold_labels.exists() else GOLD_LABELS.empty()
    truth = pd.concat([pd.read_parquet(p) for p in sorted(layout.sample_truth.glob("*.parquet"))] + [gold],
                      ignore_index=True).merge(chosen[["item_id", "image_file"]], on="item_id")
    overlap = min(int(chosen["overlap"].iloc[0]), *(len(p) for p, _ in vendors.values()))
    digest = str(chosen["batch_id"].iloc[0]).rsplit("-", 1)[-1]  # image names carry the batch digest
    accepted, quarantined, all_tasks = [], [], []
    with tempfile.TemporaryDirectory(prefix="vendor-pilot-") as scratch:
        inbox = Path(scratch)
        for vendor, (profiles, _) in vendors.items():
            batch_id = f"{vendor}-{partition_date}-{digest}"
            vendor_tasks = VENDOR_TASKS.conform(chosen.assign(vendor=vendor, batch_id=batch_id, overlap=overlap))
            answers = simulate_answers(vendor_tasks, truth, profiles, overlap, list(ontology.scene_classes),
                                       ontology.object_geometry, seed=seed_for_batch(batch_id) + seed)
            files = write_label_studio_exports(answers, vendor_tasks, profiles, inbox / batch_id, vendor)
            report = process_vendor_returns({batch_id: (inbox, files)}, vendor_tasks, gold, ontology.raw,
                                            vendor=vendor, already_ingested_sha256=set(), partition_date=partition_date)
            accepted.append(report.accepted)
            quarantined.append(report.quarantine)
            all_tasks.append(vendor_tasks)
    answers, quarantine = pd.concat(accepted, ignore_index=True), pd.concat(quarantined, ignore_index=True)
    batch_tasks = pd.concat(all_tasks, ignore_index=True)
    consensus = run_consensus(answers, batch_tasks, gold).labels
    return pilot_comparison(answers, quarantine, batch_tasks, gold, consensus_labels=consensus,
                            prices={vendor: prices for vendor, (_, prices) in vendors.items()})
