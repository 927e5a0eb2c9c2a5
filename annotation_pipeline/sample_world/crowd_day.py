"""One day of the sample world's crowd without Dagster: many seeds in seconds.

The demo (``annotation-pipeline demo``) takes minutes per seed, most of it ingestion, QA and the
release. The consensus stage only needs what the workforce returns, so this module renders the
same street scenes (``sample_data.render_scene``), hides the same number of gold tasks among them
and lets the same simulated workforce (``data/sample_settings.json``, ``workforce.simulate_answers``,
overlap 3 of 5) answer them. What it skips: duplicates, broken files and QA quarantine (the
spammer's answers pass QA in the demo too; the gates judge batches, not rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.sample_world.sample_data import load_sample_settings, render_scene
from annotation_pipeline.sample_world.workforce import AnnotatorProfile, simulate_answers

COORDS = ["x_min", "y_min", "x_max", "y_max"]


def _truth(item_id: str, truth) -> list[dict]:
    rows = [{"item_id": item_id, "kind": "choice", "label": truth.scene}]
    for label, box, wkb in truth.objects:
        rows.append({"item_id": item_id, "kind": "polygon" if wkb is not None else "box",
                     "label": label, **dict(zip(COORDS, box)), "geometry_wkb": wkb})
    return rows


def sample_world_day(seed: int, n_images: int = 49, n_gold: int | None = None):
    """(annotations, tasks, gold, truth) for one generated day, as ``run_consensus`` reads them.

    ``truth`` holds every item's true scene and objects (gold items included); ``gold`` only the
    gold items', as the pipeline's gold set does.
    """
    settings = load_sample_settings()
    vendor = settings["vendor"]
    n_gold = vendor.get("gold_tasks", 12) if n_gold is None else n_gold
    width, height = settings["image_size"]
    rng = np.random.default_rng([seed, 18])
    truth_rows: list[dict] = []
    for i in range(n_images + n_gold):
        _, scene = render_scene(rng, (width, height))
        truth_rows += _truth(f"s{seed}-{i:04d}", scene)
    truth = pd.DataFrame(truth_rows)
    items = truth["item_id"].drop_duplicates().to_numpy()
    tasks = pd.DataFrame({"task_id": [f"t-{i}" for i in items], "item_id": items,
                          "image_file": [f"{i}.png" for i in items],
                          "image_width": float(width), "image_height": float(height),
                          "is_gold": np.arange(len(items)) >= n_images})
    profiles = [AnnotatorProfile.from_dict(p) for p in vendor["annotators"]]
    ontology = load_ontology()
    seen = truth.merge(tasks[["item_id", "image_file"]], on="item_id")
    answers = simulate_answers(tasks, seen, profiles, int(vendor["overlap"]),
                               list(ontology.scene_classes), ontology.object_geometry, seed=seed)
    task = tasks.set_index("task_id").loc[answers["task_id"]]
    annotations = answers.drop(columns=["task_id", "ann", "lead_time"]).assign(
        annotation_id=[f"a{seed}-{k}" for k in range(len(answers))],
        item_id=task["item_id"].to_numpy(), is_gold=task["is_gold"].to_numpy(),
        annotator_id=np.array([p.id for p in profiles])[answers["ann"].to_numpy()],
        batch_id=f"batch-{seed}")
    gold = truth[truth["item_id"].isin(tasks.loc[tasks["is_gold"], "item_id"])]
    return annotations, tasks, gold.reset_index(drop=True), truth
