"""Review tasks: the queued review-queue candidates, as tasks a reviewer can open in Label Studio.

A day's queued candidates (``review_queue`` rows with status ``queued``) become review tasks,
with a small audit sample of released consensus labels (``audit_sample``: a reviewer confirms
or overrides what would otherwise ship unseen) and a few hidden gold tasks mixed in, so a
reviewer's accuracy is measured like an annotator's. The review folder (``DataLayout.review_folder(day)``) holds:

- ``tasks.json``: Label Studio import tasks, the candidate label as a prediction (a scene
  choice, or the object's box; a polygon candidate is shown as the outline of its bounds), so
  the same file can be imported into a Label Studio review project;
- ``images/``: the anonymized images, named by a hash of day and item (never the item id,
  which is the raw file's hash), one file per item;
- ``returns/``: where reviewers put their decision files (``consensus.review_decisions``).

Gold tasks look like any other: a gold item's image is anonymized like a vendor's gold image,
and its candidate is the known answer for half of them and another class for the rest, so
confirming everything does not score well. Which task is gold stays on our side, in the
REVIEW_TASKS table. Gold tasks are scene choices: the gold set knows every scene.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.image import ImageProblem, anonymize_image
from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.contracts import REVIEW_TASKS
from annotation_pipeline.layout import ReviewFolder
from annotation_pipeline.ontology import Ontology

COORDS = ["x_min", "y_min", "x_max", "y_max"]
# What the prediction in tasks.json says it comes from: the consensus stage, not a model.
PREDICTION_SOURCE = "consensus"


def _digest(parts) -> list[str]:
    return [hashlib.sha256(p.encode()).hexdigest()[:12] for p in parts]


def review_task_ids(partition_date: str, candidates: pd.DataFrame) -> pd.Series:
    """``rv-<12 hex>`` from day, item, kind, label and box: a rerun names the same task the same."""
    coords = np.char.mod("%.2f", candidates[COORDS].to_numpy(float))  # NaN (a scene) is "nan"
    keys = ["|".join([partition_date, str(item), str(kind), str(label), *xy]) for item, kind, label, xy in
            zip(candidates["item_id"], candidates["kind"], candidates["label"], coords)]
    return pd.Series(["rv-" + d for d in _digest(keys)], index=candidates.index, dtype="string")


def image_file_names(partition_date: str, item_ids: pd.Series, suffixes: pd.Series) -> pd.Series:
    """One image per item, named by a hash of day and item (the item id is the raw file's hash)."""
    digests = _digest(f"{partition_date}|{item}" for item in item_ids)
    return pd.Series(["im-" + d for d in digests], index=item_ids.index) + suffixes.to_numpy()


def _gold_tasks(gold_labels: pd.DataFrame, scene_classes: list[str], n_gold: int,
                rng: np.random.Generator) -> pd.DataFrame:
    scenes = gold_labels[gold_labels["kind"] == "choice"].drop_duplicates("item_id")
    if not n_gold or scenes.empty:
        return scenes.iloc[:0].assign(gold_label=pd.Series(dtype="string"))
    pick = scenes.iloc[np.sort(rng.choice(len(scenes), size=min(n_gold, len(scenes)), replace=False))]
    truth = pick["label"].to_numpy(dtype=object)
    # half the candidates are the known answer, the rest another class: "confirm all" scores 0.5
    wrong = rng.random(len(pick)) < 0.5
    classes = np.asarray(scene_classes, dtype=object)
    shift = rng.integers(1, len(classes), len(pick)) if len(classes) > 1 else np.zeros(len(pick), int)
    position = pd.Index(classes).get_indexer(truth)
    other = classes[(np.where(position < 0, 0, position) + shift) % len(classes)]
    return pick.assign(label=np.where(wrong, other, truth), gold_label=truth)


def audit_sample(labels: pd.DataFrame, quarantine: pd.DataFrame, n_audit: int) -> pd.DataFrame:
    """Released consensus labels to spot-check, as review candidates (``reason`` says why).

    Labels of items that lost answers to intake or QA quarantine come first: their consensus
    rests on fewer answers than the overlap asked for. Then the least confident; ties by item.
    """
    judged = quarantine[quarantine["stage"].isin(["intake", "qa"])]
    lost = labels["item_id"].isin(judged["item_id"].dropna()).to_numpy()
    order = labels.assign(lost=lost).sort_values(["lost", "confidence", "item_id", "kind", "label"],
                                                 ascending=[False, True, True, True, True], kind="stable")
    picked = order.head(max(n_audit, 0))
    return picked.assign(reason=np.where(picked["lost"], "audit_answers_quarantined", "audit_low_confidence"),
                         status="audit").drop(columns=["lost"])


def build_review_tasks(queue: pd.DataFrame, gold_labels: pd.DataFrame, image_suffix: pd.Series,
                       partition_date: str, *, scene_classes: list[str], n_gold: int,
                       audit: pd.DataFrame | None = None, seed: int = 0) -> pd.DataFrame:
    """REVIEW_TASKS for the queued rows of ``queue``, the released labels in ``audit`` (see
    ``audit_sample``) and ``n_gold`` hidden gold scene tasks (none on a day with no other task).

    ``image_suffix`` maps item id to the image's suffix (``.png``/``.jpg``) for queued and gold
    items. The task order is shuffled (seeded by day), so gold tasks sit at no fixed place.
    """
    rng = np.random.default_rng([seed, int(partition_date.replace("-", ""))])
    queued = queue[queue["status"] == "queued"]
    if audit is not None and len(audit):
        queued = pd.concat([queued, audit[[c for c in queued.columns if c in audit.columns]]], ignore_index=True)
    candidates = queued.assign(is_gold=False, gold_label=None)
    n_gold = n_gold if len(queued) else 0  # gold measures reviewers at work: no work, no gold
    gold = _gold_tasks(gold_labels, scene_classes, n_gold, rng).assign(
        is_gold=True, confidence=np.nan, n_assigned=0, annotation_ids="", reason="gold")
    frame = pd.concat([candidates, gold[[c for c in candidates.columns if c in gold.columns]]],
                      ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    frame["review_task_id"] = review_task_ids(partition_date, frame)
    frame["partition_date"] = partition_date
    suffix = image_suffix.reindex(frame["item_id"]).fillna(".png")
    frame["image_file"] = image_file_names(partition_date, frame["item_id"], suffix).to_numpy()
    frame["annotation_ids"] = frame["annotation_ids"].fillna("")
    frame["n_assigned"] = frame["n_assigned"].fillna(0)
    frame = frame.drop_duplicates("review_task_id")  # the same candidate twice is one task
    return REVIEW_TASKS.conform(frame)


def _prediction_result(task, width: float, height: float, ontology: Ontology) -> dict:
    """The candidate as a Label Studio result: a scene choice, a box, or a polygon's bounds."""
    if task.kind == "choice":
        return {"from_name": ontology.raw["scene"]["from_name"], "to_name": "image", "type": "choices",
                "value": {"choices": [task.label]}}
    x0, y0, x1, y1 = (100 * task.x_min / width, 100 * task.y_min / height,
                      100 * task.x_max / width, 100 * task.y_max / height)
    from_name = ontology.raw["objects"].get(task.label, {}).get("from_name", "objects")
    common = {"from_name": from_name, "to_name": "image", "original_width": int(width),
              "original_height": int(height)}
    if task.kind == "polygon":
        return {**common, "type": "polygonlabels",
                "value": {"points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "polygonlabels": [task.label]}}
    return {**common, "type": "rectanglelabels",
            "value": {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "rotation": 0,
                      "rectanglelabels": [task.label]}}


def label_studio_review_tasks(tasks: pd.DataFrame, sizes: pd.DataFrame, ontology: Ontology) -> list[dict]:
    """The import file's tasks: nothing in them says which are gold, nor which item they show.

    ``sizes`` is indexed by item id with ``width`` and ``height`` in pixels.
    """
    out = []
    for number, task in enumerate(tasks.itertuples(index=False), start=1):  # JSON building, a few dozen tasks
        width, height = (float(v) for v in sizes.loc[task.item_id, ["width", "height"]])
        out.append({"id": number,
                    "data": {"image": f"images/{task.image_file}", "review_task_id": task.review_task_id,
                             "kind": task.kind, "candidate": task.label},
                    "predictions": [{"model_version": PREDICTION_SOURCE,
                                     "result": [_prediction_result(task, width, height, ontology)]}]})
    return out


def write_review_folder(tasks: pd.DataFrame, sources: pd.DataFrame, folder: ReviewFolder,
                        ontology: Ontology) -> Path:
    """Write ``tasks.json`` and the images; unchanged files are left alone (reruns rewrite nothing).

    ``sources`` is indexed by item id: ``path`` (absolute), ``width``, ``height``, ``is_gold``.
    Gold images are anonymized and re-encoded here, as for a vendor; queued items' images come
    from ``anonymized_items`` already.
    """
    folder.images.mkdir(parents=True, exist_ok=True)
    folder.returns.mkdir(parents=True, exist_ok=True)
    for item_id, image_file in tasks.drop_duplicates("item_id")[["item_id", "image_file"]].itertuples(index=False):
        target = folder.images / image_file
        if target.is_file():
            continue
        source = Path(sources.loc[item_id, "path"])
        if not bool(sources.loc[item_id, "is_gold"]):
            shutil.copyfile(source, target)
            continue
        result = anonymize_image(source.read_bytes(), f"gold image {source.name}")
        if isinstance(result, ImageProblem):  # a bad gold file, not a caller's type error
            message = f"{result.detail} ({result.reason}); fix or remove this gold image"
            raise ValueError(message)  # noqa: TRY004
        write_bytes_atomic(target, result.data)
    content = json.dumps(label_studio_review_tasks(tasks, sources, ontology), indent=1, sort_keys=True).encode()
    if not folder.tasks_file.is_file() or folder.tasks_file.read_bytes() != content:
        write_bytes_atomic(folder.tasks_file, content)
    return folder.tasks_file
