"""A simulated vendor workforce for the embedded default.

Annotators with profiles (accuracy, box jitter, miss rate, speed; one spammer) label what
lands in the outbox and write Label Studio JSON exports into the inbox, one file per
annotator, as a vendor's export would. Downstream code reads the inbox the same way whoever
wrote it.

The simulated humans "see" an image through the ground truth kept aside by the sample-data
generator: that lookup (``truth`` keyed by task image file) is the simulator's privilege and
nothing else in the pipeline has it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.ontology import Ontology, load_ontology
from annotation_pipeline.vendor.label_studio import LabelStudioClient, annotator_email
from annotation_pipeline.vendor.label_studio_format import label_studio_results

SCENE_FROM_NAME = "scene"  # the ontology's scene control (benchmarks build the same JSON with strings)


@dataclass(frozen=True)
class AnnotatorProfile:
    id: str
    accuracy: float        # probability of the right class
    box_jitter_px: float   # std of the noise on each box edge
    miss_rate: float       # probability of not drawing an object at all
    mean_seconds: float    # typical time per task
    spammer: bool = False  # answers at random, boxes anywhere

    @staticmethod
    def from_dict(d: dict) -> "AnnotatorProfile":
        return AnnotatorProfile(d["id"], d["accuracy"], d["box_jitter_px"], d["miss_rate"],
                                d["mean_seconds"], bool(d.get("spammer", False)))


def _user(annotator: str, index: int, vendor: str) -> dict:
    return {"id": index + 1, "email": annotator_email(annotator, vendor)}


def simulate_answers(tasks: pd.DataFrame, truth: pd.DataFrame, profiles: list[AnnotatorProfile],
                     overlap: int, scene_classes: list[str], object_geometry: dict[str, str],
                     seed: int) -> pd.DataFrame:
    """One row per (task, annotator, answer): kind, label, box or polygon points, lead time.

    ``object_geometry`` maps each object class to "box" or "polygon" (the ontology's): a
    mistaken class is always one drawn with the same tool.

    ``tasks``: task_id, image_file, image_width, image_height. ``truth``: image_file, kind,
    label, x_min.., geometry_wkb.
    """
    rng = np.random.default_rng(seed)
    if overlap > len(profiles):
        raise ValueError(f"overlap {overlap} needs at least {overlap} annotators, have {len(profiles)}")
    n_tasks = len(tasks)
    # Each task gets `overlap` distinct annotators: argsort of random keys per row.
    assigned = np.argsort(rng.random((n_tasks, len(profiles))), axis=1)[:, :overlap]
    pairs = pd.DataFrame({"task_pos": np.repeat(np.arange(n_tasks), overlap), "ann": assigned.ravel()})
    pairs["task_id"] = tasks["task_id"].to_numpy()[pairs["task_pos"]]
    pairs["image_file"] = tasks["image_file"].to_numpy()[pairs["task_pos"]]
    acc = np.array([p.accuracy for p in profiles]); jitter = np.array([p.box_jitter_px for p in profiles])
    miss = np.array([p.miss_rate for p in profiles]); secs = np.array([p.mean_seconds for p in profiles])
    spam = np.array([p.spammer for p in profiles])
    ann = pairs["ann"].to_numpy()
    pairs["lead_time"] = rng.lognormal(np.log(secs[ann]), 0.3)

    # Scene answers: right with probability `accuracy`, else another class at random.
    scene_truth = truth[truth["kind"] == "choice"].drop_duplicates("image_file").set_index("image_file")["label"]
    right = scene_truth.reindex(pairs["image_file"]).to_numpy()
    correct = rng.random(len(pairs)) < acc[ann]
    random_pick = np.asarray(scene_classes, dtype=object)[rng.integers(0, len(scene_classes), len(pairs))]
    choices = pairs.assign(kind="choice", label=np.where(correct & pd.notna(right), right, random_pick))

    # Objects: every (annotator, true object) pair, minus misses, with jitter and label noise.
    objects = truth[truth["kind"] != "choice"]
    obj = pairs.merge(objects, on="image_file", how="inner")
    obj = obj[rng.random(len(obj)) >= miss[obj["ann"].to_numpy()]].copy()
    box = obj[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float)
    # Edge noise grows with object size (people are about as precise in percent as in pixels
    # on small objects); `box_jitter_px` is the noise on a 40 px object.
    size = np.sqrt(np.clip((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]), 1, None))
    noise = rng.normal(0, 1, (len(obj), 4)) * (jitter[obj["ann"].to_numpy()] * np.clip(size / 40, 0.3, 2))[:, None]
    box = box + noise
    w_img = obj["image_file"].map(tasks.set_index("image_file")["image_width"]).to_numpy(float)
    h_img = obj["image_file"].map(tasks.set_index("image_file")["image_height"]).to_numpy(float)
    box[:, [0, 2]] = np.clip(box[:, [0, 2]], 0, w_img[:, None]); box[:, [1, 3]] = np.clip(box[:, [1, 3]], 0, h_img[:, None])
    obj[["x_min", "y_min", "x_max", "y_max"]] = np.column_stack(
        [np.minimum(box[:, 0], box[:, 2]), np.minimum(box[:, 1], box[:, 3]),
         np.maximum(box[:, 0], box[:, 2]), np.maximum(box[:, 1], box[:, 3])])
    # Polygons: jitter every vertex by the same per-annotator scale.
    polys = obj["geometry_wkb"].notna().to_numpy()
    if polys.any():
        geoms = shapely.from_wkb(obj.loc[polys, "geometry_wkb"].to_numpy())
        scale = jitter[obj.loc[polys, "ann"].to_numpy()]
        coords, idx = shapely.get_coordinates(geoms, return_index=True)
        coords = coords + rng.normal(0, 1, coords.shape) * scale[idx][:, None] * 0.5
        # Rings are closed: the last vertex of each must stay equal to its (jittered) first one.
        starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
        ends = np.r_[starts[1:], len(idx)] - 1
        coords[ends] = coords[starts]
        rebuilt = shapely.polygons(shapely.linearrings(coords, indices=idx))
        obj.loc[polys, "geometry_wkb"] = shapely.to_wkb(rebuilt)
    flip = rng.random(len(obj)) >= np.sqrt(acc[obj["ann"].to_numpy()])  # box classes are easier than scenes
    object_classes = np.asarray(list(object_geometry), dtype=object)
    polygon_classes = [c for c, g in object_geometry.items() if g == "polygon"]
    swap = object_classes[rng.integers(0, len(object_classes), len(obj))]
    same_geometry = (obj["geometry_wkb"].notna().to_numpy() == np.isin(swap, polygon_classes))
    obj["label"] = np.where(flip & same_geometry, swap, obj["label"])
    # A spammer also draws boxes where there is nothing.
    spam_pairs = pairs[spam[ann]]
    box_classes = np.asarray([c for c, g in object_geometry.items() if g == "box"], dtype=object)
    if len(spam_pairs):
        w = tasks.set_index("task_id").loc[spam_pairs["task_id"], "image_width"].to_numpy(float)
        h = tasks.set_index("task_id").loc[spam_pairs["task_id"], "image_height"].to_numpy(float)
        x0, y0 = rng.uniform(0, 0.8, len(w)) * w, rng.uniform(0, 0.8, len(h)) * h
        fake = spam_pairs.assign(kind="box", label=box_classes[
            rng.integers(0, len(box_classes), len(w))], x_min=x0, y_min=y0, x_max=x0 + 0.15 * w, y_max=y0 + 0.15 * h,
            geometry_wkb=None)
        obj = pd.concat([obj, fake], ignore_index=True)
    cols = ["task_id", "ann", "lead_time", "kind", "label", "x_min", "y_min", "x_max", "y_max", "geometry_wkb"]
    answers = pd.concat([choices.assign(x_min=np.nan, y_min=np.nan, x_max=np.nan, y_max=np.nan, geometry_wkb=None)[cols],
                         obj.assign(kind=np.where(obj["geometry_wkb"].notna(), "polygon", "box"))[cols]],
                        ignore_index=True)
    return answers


def write_label_studio_exports(answers: pd.DataFrame, tasks: pd.DataFrame, profiles: list[AnnotatorProfile],
                               inbox_dir: Path, vendor: str, ontology: Ontology | None = None) -> list[Path]:
    """One Label Studio JSON export per annotator; returns the files written."""
    ontology = ontology or load_ontology()
    inbox_dir.mkdir(parents=True, exist_ok=True)
    size = tasks.set_index("task_id")[["image_width", "image_height", "image_file"]]
    written = []
    for ann, mine in answers.groupby("ann", sort=True):  # per annotator file; JSON building is I/O shaped
        profile = profiles[int(ann)]
        export = []
        for task_id, task_answers in mine.groupby("task_id", sort=False):
            w, h, image_file = size.loc[task_id]
            export.append({"id": int(task_id), "data": {"image": f"images/{image_file}"},
                           "annotations": [{"id": int(task_id) * 100 + int(ann), "completed_by": _user(profile.id, int(ann), vendor),
                                            "lead_time": round(float(task_answers["lead_time"].iloc[0]), 2),
                                            "result": answer_results(task_answers, w, h, ontology)}]})
        path = inbox_dir / f"{profile.id}.json"
        content = json.dumps(export, indent=1).encode()
        if not path.exists() or path.read_bytes() != content:
            write_bytes_atomic(path, content)
        written.append(path)
    return written


def answer_results(task_answers: pd.DataFrame, width: float, height: float, ontology: Ontology) -> list[dict]:
    """One annotator's answers to one task as Label Studio result items."""
    return label_studio_results(task_answers, width, height, ontology,
                                ids=[f"r{r}" for r in range(len(task_answers))])


def answer_in_label_studio(client: LabelStudioClient, project_id: int, answers: pd.DataFrame, tasks: pd.DataFrame,
                           profiles: list[AnnotatorProfile], vendor: str, ontology: Ontology) -> int:
    """The simulated annotators answer a batch's project as their own Label Studio accounts.

    Label Studio's open-source edition hands tasks out but does not assign them to named
    people; ``simulate_answers`` already chose k distinct annotators per task, and each answer
    is posted with ``completed_by`` = that annotator's account. A (task, annotator) pair that
    already has an annotation is skipped, so a rerun adds no second answer. Returns how many
    annotations were posted.
    """
    accounts = client.ensure_users(annotator_email(p.id, vendor) for p in profiles)
    user_of = np.array([accounts[annotator_email(p.id, vendor)] for p in profiles])
    in_project = client.tasks(project_id)
    ls_task = {t["data"].get("task_id"): int(t["id"]) for t in in_project}
    done = {(t["data"].get("task_id"), _account_id(a.get("completed_by")))
            for t in in_project for a in t.get("annotations") or []}
    size = tasks.set_index("task_id")[["image_width", "image_height"]]
    posted = 0
    # One HTTP call per (task, annotator) answer: Label Studio has no bulk create of annotations
    # for tasks already in a project.
    for (ann, task_id), mine in answers.groupby(["ann", "task_id"], sort=True):
        user = int(user_of[int(ann)])
        if (task_id, user) in done:
            continue
        width, height = size.loc[task_id]
        client.create_annotation(ls_task[task_id], answer_results(mine, width, height, ontology),
                                 round(float(mine["lead_time"].iloc[0]), 2), completed_by=user)
        posted += 1
    return posted


def _account_id(completed_by) -> int | None:
    return completed_by.get("id") if isinstance(completed_by, dict) else completed_by


def seed_for_batch(batch_id: str) -> int:
    return int(hashlib.sha256(batch_id.encode()).hexdigest()[:8], 16)
