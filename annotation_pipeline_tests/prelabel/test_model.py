import numpy as np
import pandas as pd

from annotation_pipeline.contracts import LABELING_QUEUE, PRELABELS
from annotation_pipeline.prelabel.model import _box_iou, select_for_labeling
from annotation_pipeline.sample_world.sample_data import render_scene


def _held_out(n=40, seed=123):
    rng = np.random.default_rng(seed)
    images, truths = {}, {}
    for i in range(n):
        img, truth = render_scene(rng, (320, 240))
        images[f"item{i}"] = np.asarray(img)
        truths[f"item{i}"] = truth
    return images, truths


def test_the_model_prelabels_unseen_scenes_far_better_than_chance(trained_model):
    images, truths = _held_out()
    pre = trained_model.predict(images)
    PRELABELS.validate(pre)
    scene = pre[pre["kind"] == "choice"].set_index("item_id")["label"]
    accuracy = np.mean([scene[i] == truths[i].scene for i in images])
    assert accuracy >= 0.8  # chance is 0.25 over four scene classes
    # Object boxes: most true objects are found with the right class at IoU >= 0.5.
    found = total = 0
    for i, truth in truths.items():
        boxes = pre[(pre["item_id"] == i) & (pre["kind"] == "box")]
        for label, box, _ in truth.objects:
            total += 1
            same = boxes[boxes["label"] == label]
            if len(same) and _box_iou(np.array([box]), same[["x_min", "y_min", "x_max", "y_max"]].to_numpy()).max() >= 0.5:
                found += 1
    assert found / total >= 0.7
    assert pre["model_version"].nunique() == 1 and pre["model_version"].iloc[0] == trained_model.version


def test_active_learning_takes_the_least_certain_items_first_within_budget():
    pre = PRELABELS.conform(pd.DataFrame({
        "item_id": ["sure", "unsure", "middle", "unsure"], "kind": ["choice", "choice", "choice", "box"],
        "label": ["day", "fog", "rain", "car"], "x_min": [np.nan, np.nan, np.nan, 1.0],
        "y_min": [np.nan, np.nan, np.nan, 1.0], "x_max": [np.nan, np.nan, np.nan, 5.0],
        "y_max": [np.nan, np.nan, np.nan, 5.0], "score": [0.99, 0.40, 0.70, 0.5], "model_version": "m",
    }))
    queue = select_for_labeling(pre, "2026-11-21", budget=2)
    LABELING_QUEUE.validate(queue)
    assert queue["item_id"].tolist() == ["unsure", "middle"]
    assert queue["priority"].tolist() == [1, 2]
    assert select_for_labeling(pre, "2026-11-21", budget=0).empty


def test_the_model_version_names_its_training_data(trained_model, gold_root):
    from annotation_pipeline.prelabel.model import load_rgb, train_prelabel_model

    labels = pd.read_parquet(gold_root / "gold" / "gold_labels.parquet")
    images = {p.stem: load_rgb(p) for p in sorted((gold_root / "gold" / "images").glob("*.png"))[:30]}
    fewer = train_prelabel_model(images, labels[labels["item_id"].isin(images)])
    assert fewer.version != trained_model.version


def test_retraining_from_a_release_learns_its_vendor_labels_and_changes_the_model_version(trained_model, tmp_path):
    from annotation_pipeline.prelabel.model import release_training_set, train_prelabel_model
    from annotation_pipeline.sample_world.sample_data import _truth_rows

    rng = np.random.default_rng(99)
    rows, paths = [], {}
    for k in range(24):
        image, truth = render_scene(rng, (320, 240))
        paths[f"r{k}"] = tmp_path / f"r{k}.png"
        image.save(paths[f"r{k}"])
        source = "machine" if k >= 20 else "consensus"
        rows += [{**row, "label_source": source} for row in _truth_rows(f"r{k}", truth)]
    released = pd.DataFrame(rows)
    released.loc[released["item_id"] == "r0", "item_id"] = "gold0"  # a gold item a vendor labeled
    paths["gold0"] = paths.pop("r0")
    images, labels = release_training_set(released, paths, exclude={"gold0"})
    assert sorted(images) == sorted(f"r{k}" for k in range(1, 20))  # no gold, no machine labels
    assert set(labels["item_id"]) == set(images) and labels["label_source"].eq("consensus").all()
    retrained = train_prelabel_model(images, labels, source="release v0001")
    assert retrained.version != trained_model.version and retrained.version.startswith("prelabel-")
    assert retrained.card("x")["source"] == "release v0001"
    assert train_prelabel_model(images, labels, source="release v0001").version == retrained.version  # content hash
    moved = labels.assign(x_min=labels["x_min"] + 1)
    assert train_prelabel_model(images, moved).version != retrained.version  # a corrected box is new data
