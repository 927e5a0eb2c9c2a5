"""Model-assisted pre-labels and active-learning selection.

The pre-label model is small and honest: a scene classifier on global colour statistics and an
object detector made of a background-difference region proposer plus a classifier on region
features (colour, shape, fill). Both are scikit-learn models trained on labeled data we
already trust (the gold set, later the released dataset), so no weights are downloaded. Its
version is the hash of what it was trained on and how, so every pre-label names the model
that made it.

Active learning picks the items the model is least sure about (scene margin and object
scores), under a budget.

Stored without code: the two scikit-learn models go to one skops file (skops loads only an
allow-list of types: scikit-learn estimators, numpy arrays, and here the tree structure; a
pickle would run whatever a crafted file asks), version and metrics to a JSON card. Loading is
checked against the sha256 recorded when the model was saved, read from the *audit log*
(hash-chained), not only from the card beside the file: a swapped model file with a rewritten
card is still refused. The Dagster materialization of ``prelabel_model`` records it as well.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.audit import append_audit_event, read_audit_events, verify_audit_chain
from annotation_pipeline.contracts import LABELING_QUEUE, PRELABELS
from annotation_pipeline.layout import DataLayout

FEATURE_VERSION = "colour-stats-v1"
BACKGROUND_LABEL = "__background__"
# A region must differ from the image's median colour by this much (0-255, max over RGB) to
# be foreground: rain streaks (+40) and sensor noise (sigma 6) stay below it.
FOREGROUND_THRESHOLD = 55
MIN_REGION_PIXELS = 40
MAX_OBJECTS_PER_IMAGE = 12
MODEL_SAVED_EVENT = "prelabel_model_saved"
# Beyond skops' own trusted defaults (scikit-learn estimators, numpy), the random forest's
# tree structure. Anything else in a model file is refused before it is built.
TRUSTED_EXTRA_TYPES = frozenset({"sklearn.tree._tree.Tree"})


class ModelIntegrityError(RuntimeError):
    """The stored pre-label model is not the one that was trained: it is not loaded."""


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def scene_features(rgb: np.ndarray) -> np.ndarray:
    """Global colour statistics; column-wise variance catches vertical rain streaks."""
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    col_means = rgb.mean(axis=(0, 2))
    return np.concatenate([pixels.mean(0), pixels.std(0), np.percentile(pixels, [10, 50, 90], axis=0).ravel(),
                           [col_means.std()]]) / 255.0


def propose_regions(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate object boxes (n, 4: x_min, y_min, x_max, y_max) and region features (n, f)."""
    rgb_f = rgb.astype(np.float32)
    background = np.median(rgb_f.reshape(-1, 3), axis=0)
    mask = np.abs(rgb_f - background).max(axis=2) > FOREGROUND_THRESHOLD
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3)))
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((0, 4)), np.zeros((0, 11))
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(mask, labels, index)
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=float)
    keep = sizes >= MIN_REGION_PIXELS
    boxes, sizes, index = boxes[keep], sizes[keep], index[keep]
    if len(index) == 0:
        return np.zeros((0, 4)), np.zeros((0, 11))
    means = np.stack([ndimage.mean(rgb_f[..., c], labels, index) for c in range(3)], axis=1) / 255.0
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    fill = sizes / (w * h)
    feats = np.column_stack([means, means - background / 255.0, np.log(w / h), fill,
                             np.log(w), np.log(h), np.log(sizes)])
    return boxes, feats


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (n, 4) and b (m, 4)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0]); y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2]); y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


@dataclass
class PrelabelModel:
    scene_model: object
    object_model: object
    version: str
    trained_on: int
    metrics: dict = field(default_factory=dict)

    def predict_scenes(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scene label and its probability for each RGB array."""
        proba = self.scene_model.predict_proba(np.stack([scene_features(image) for image in images]))
        return self.scene_model.classes_[proba.argmax(1)], proba.max(1)

    def predict(self, images: dict[str, np.ndarray]) -> pd.DataFrame:
        """PRELABELS rows for {item_id: rgb array}."""
        ids = list(images)
        if not ids:
            return PRELABELS.empty()
        scene_labels, scene_scores = self.predict_scenes([images[i] for i in ids])
        rows = pd.DataFrame({"item_id": ids, "kind": "choice", "label": scene_labels,
                             "x_min": np.nan, "y_min": np.nan, "x_max": np.nan, "y_max": np.nan,
                             "score": scene_scores})
        proposals = [propose_regions(images[i]) for i in ids]
        counts = np.array([len(b) for b, _ in proposals])
        frames = [rows]
        if counts.sum():
            boxes = np.concatenate([b for b, _ in proposals])
            feats = np.concatenate([f for _, f in proposals])
            proba = self.object_model.predict_proba(feats)
            obj_classes = self.object_model.classes_
            objects = pd.DataFrame({"item_id": np.repeat(ids, counts), "kind": "box",
                                    "label": obj_classes[proba.argmax(1)], "x_min": boxes[:, 0],
                                    "y_min": boxes[:, 1], "x_max": boxes[:, 2], "y_max": boxes[:, 3],
                                    "score": proba.max(1)})
            objects = objects[objects["label"] != BACKGROUND_LABEL]
            objects = (objects.sort_values(["item_id", "score"], ascending=[True, False])
                       .groupby("item_id").head(MAX_OBJECTS_PER_IMAGE))
            frames.append(objects)
        out = pd.concat(frames, ignore_index=True)
        out["model_version"] = self.version
        return PRELABELS.conform(out)

    def to_bytes(self) -> bytes:
        import skops.io as sio  # a second of imports, only where models are stored

        return sio.dumps({"scene_model": self.scene_model, "object_model": self.object_model})

    def card(self, sha256: str) -> dict:
        return {"format": "skops", "sha256": sha256, "version": self.version, "trained_on": self.trained_on,
                "metrics": self.metrics}

    @classmethod
    def from_bytes(cls, data: bytes, card: dict) -> PrelabelModel:
        """Build from skops bytes, refusing any type outside the allow-list (never runs code)."""
        import skops.io as sio

        untrusted = set(sio.get_untrusted_types(data=data))
        refused = sorted(untrusted - TRUSTED_EXTRA_TYPES)
        if refused:
            raise ModelIntegrityError(f"the model file holds types outside the allow-list: {', '.join(refused)}")
        models = sio.loads(data, trusted=sorted(untrusted))
        return cls(models["scene_model"], models["object_model"], str(card["version"]), int(card["trained_on"]),
                   dict(card.get("metrics") or {}))


def save_model(model: PrelabelModel, root: Path) -> str:
    """Store the model (skops + JSON card) and record its sha256 in the audit log; the sha256."""
    layout = DataLayout(root)
    data = model.to_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(layout.prelabel_model, data)
    write_bytes_atomic(layout.prelabel_model_card, json.dumps(model.card(sha256), indent=2).encode())
    append_audit_event(root, MODEL_SAVED_EVENT, model_version=model.version, sha256=sha256,
                       path=layout.relative(layout.prelabel_model))
    return sha256


def recorded_model_sha256(root: Path) -> str | None:
    """The sha256 of the last saved model, from the audit log (None when none was saved)."""
    events = [e for e in read_audit_events(root) if e.get("event") == MODEL_SAVED_EVENT]
    return str(events[-1]["sha256"]) if events else None


def load_model(root: Path) -> PrelabelModel:
    """The stored model, once its bytes match the sha256 the audit log recorded at saving."""
    layout = DataLayout(root)
    path, card_path = layout.prelabel_model, layout.prelabel_model_card
    retrain = "retrain it (job `train_prelabel_model`, or materialize `prelabel_model`)"
    if not path.is_file() or not card_path.is_file():
        raise ModelIntegrityError(f"no pre-label model at {path} (with its card {card_path.name}): {retrain}")
    chain = verify_audit_chain(root)
    if chain:
        raise ModelIntegrityError(f"the audit log that records the model's sha256 is broken ({chain[0]}): "
                                  f"run `annotation-pipeline verify`, then {retrain}")
    expected = recorded_model_sha256(root)
    if expected is None:
        raise ModelIntegrityError(f"the audit log records no saved pre-label model: {retrain}")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    try:
        card = json.loads(card_path.read_text())
    except ValueError:
        raise ModelIntegrityError(f"{card_path}: not JSON: {retrain}") from None
    if actual != expected or card.get("sha256") != expected:
        raise ModelIntegrityError(f"{path}: sha256 {actual[:12]} (card {str(card.get('sha256'))[:12]}) is not the "
                                  f"{expected[:12]} the audit log recorded when the model was saved; the file "
                                  f"was replaced: {retrain}")
    return PrelabelModel.from_bytes(data, card)


def train_prelabel_model(images: dict[str, np.ndarray], labels: pd.DataFrame, seed: int = 0) -> PrelabelModel:
    """Train on {item_id: rgb} and their labels (GOLD_LABELS shape: choice rows + object rows).

    Region proposals that overlap a labeled object (IoU >= 0.5) learn its class; the others
    learn ``__background__``, so the detector can say "nothing here".
    """
    ids = sorted(images)
    scenes = labels[labels["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
    ids = [i for i in ids if i in scenes.index]
    if len(set(scenes.loc[ids])) < 2:
        raise ValueError("training the pre-label model needs labeled items of at least two scene classes")
    x_scene = np.stack([scene_features(images[i]) for i in ids])
    scene_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scene_model.fit(x_scene, scenes.loc[ids].to_numpy())

    objects = labels[labels["kind"] != "choice"]
    by_item = {k: g for k, g in objects.groupby("item_id")}
    feats, targets = [], []
    for i in ids:  # per image: proposals are matched to that image's truth only
        boxes, f = propose_regions(images[i])
        if not len(boxes):
            continue
        target = np.full(len(boxes), BACKGROUND_LABEL, dtype=object)
        truth = by_item.get(i)
        if truth is not None:
            iou = _box_iou(boxes, truth[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float))
            best = iou.argmax(1)
            hit = iou[np.arange(len(boxes)), best] >= 0.5
            target[hit] = truth["label"].to_numpy()[best[hit]]
        feats.append(f); targets.append(target)
    x_obj, y_obj = np.concatenate(feats), np.concatenate(targets)
    object_model = RandomForestClassifier(n_estimators=60, min_samples_leaf=2, random_state=seed, n_jobs=1)
    object_model.fit(x_obj, y_obj)

    fingerprint = hashlib.sha256()
    fingerprint.update(FEATURE_VERSION.encode())
    fingerprint.update(",".join(ids).encode())
    fingerprint.update(pd.util.hash_pandas_object(labels[["item_id", "kind", "label"]], index=False).to_numpy().tobytes())
    version = f"prelabel-{fingerprint.hexdigest()[:12]}"
    metrics = {"train_items": len(ids), "train_regions": int(len(y_obj)),
               "scene_train_accuracy": float(scene_model.score(x_scene, scenes.loc[ids].to_numpy())),
               "object_train_accuracy": float(object_model.score(x_obj, y_obj))}
    return PrelabelModel(scene_model, object_model, version, len(ids), metrics)


def select_for_labeling(prelabels: pd.DataFrame, partition_date: str, budget: int,
                        reason: str = "uncertainty", campaign_items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Active learning: rank items by model uncertainty and keep the ``budget`` most useful.

    Uncertainty = 1 - (top-1 - top-2) scene margin is not available from one stored score, so
    we use 1 - scene score plus the mean (1 - score) of the item's proposed objects: items
    whose scene or objects the model doubts are where a human label teaches it most.

    ``campaign_items`` (contracts.RELABEL_CAMPAIGN): images a drift campaign landed. Those
    among today's items go first, in the campaign's order: production is telling us the model
    is wrong there, which beats any uncertainty estimate. They count against the budget.
    """
    scene = prelabels[prelabels["kind"] == "choice"].set_index("item_id")["score"]
    objects = prelabels[prelabels["kind"] != "choice"]
    object_doubt = (1 - objects["score"]).groupby(objects["item_id"]).mean()
    uncertainty = (1 - scene).add(object_doubt.reindex(scene.index).fillna(0.0), fill_value=0.0)
    campaign = (campaign_items if campaign_items is not None else pd.DataFrame(columns=["item_id", "campaign_id", "priority"]))
    campaign = campaign.drop_duplicates("item_id").set_index("item_id").reindex(uncertainty.index)
    why = ("relabel campaign " + campaign["campaign_id"].astype("string")).fillna(reason)
    # campaign items by their campaign rank, then everything else by doubt (no rank: NaN, last)
    order = pd.DataFrame({"rank": campaign["priority"].astype(float), "doubt": -uncertainty}).sort_values(
        ["rank", "doubt"], na_position="last", kind="stable").index[:max(budget, 0)]
    queue = pd.DataFrame({"item_id": order, "partition_date": partition_date,
                          "priority": np.arange(1, len(order) + 1), "uncertainty": uncertainty[order].to_numpy(),
                          "reason": why[order].to_numpy(), "campaign_id": campaign["campaign_id"][order].to_numpy(),
                          "uncertainty_rank": pd.NA, "diversity_rank": pd.NA})
    return LABELING_QUEUE.conform(queue)
