"""Model-assisted pre-labels and active-learning selection.

The pre-label model is small and honest: a scene classifier and an object detector made of a
class-agnostic region proposer plus a classifier on region features (HOG and colour
histograms, see ``features``). Both are scikit-learn models trained on labeled data we already
trust: the gold set at first, then the latest release's labels (gold is then held out to
measure the model). Their scores are calibrated probabilities (isotonic regression fitted on
folds the classifier did not see), so a score band can be trusted to mean a precision
(``auto_accept``). Isotonic, not Platt: with four scene classes, one-vs-rest sigmoids
renormalized left a perfectly separated scene at 0.5-0.8 on the sample world. No weights are downloaded. Its version is the hash of what it
was trained on and how, so every pre-label names the model that made it.

Active learning picks the items the model is least sure about (scene margin and object
scores), under a budget.

Stored without code: the two scikit-learn models go to one skops file (skops loads only an
allow-list of types: scikit-learn estimators, numpy arrays, and here the tree structure and
the calibration wrappers; a pickle would run whatever a crafted file asks), version and metrics to a JSON card. Loading is
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
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.audit import append_audit_event, read_audit_events, verify_audit_chain
from annotation_pipeline.contracts import LABELING_QUEUE, PRELABELS
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.prelabel.features import FEATURE_VERSION, ImageFeatures, featurize, scene_features

BACKGROUND_LABEL = "__background__"
MAX_OBJECTS_PER_IMAGE = 12
MODEL_SAVED_EVENT = "prelabel_model_saved"
# A proposal that overlaps a labeled object by this IoU learns its class (the COCO match rule).
MATCH_IOU = 0.5
# Folds of the calibration: each calibrator is fitted on labels its classifier did not see.
CALIBRATION_FOLDS = 3
# How the model is made, hashed into its version beside what it learned from: change one, new version.
MODEL_RECIPE = f"scene=logreg(C=0.5);objects=forest(50,leaf=2);calibration=isotonic,{CALIBRATION_FOLDS}-fold"
# Beyond skops' own trusted defaults (scikit-learn estimators, numpy), the random forest's tree
# structure and the calibration wrappers. Anything else in a model file is refused before it is built.
TRUSTED_EXTRA_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
})


class ModelIntegrityError(RuntimeError):
    """The stored pre-label model is not the one that was trained: it is not loaded."""


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


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
    source: str = "gold"  # what it learned from: "gold" or "release vNNNN"

    def predict_scenes(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scene label and its calibrated probability for each RGB array."""
        proba = self.scene_model.predict_proba(np.stack([scene_features(image) for image in images]))
        return self.scene_model.classes_[proba.argmax(1)], proba.max(1)

    def predict(self, images: dict[str, np.ndarray]) -> pd.DataFrame:
        """PRELABELS rows for {item_id: rgb array}; scores are calibrated probabilities."""
        return self.predict_features(featurize(images))

    def predict_features(self, features: dict[str, ImageFeatures]) -> pd.DataFrame:
        """PRELABELS rows from images' features (``featurize``)."""
        ids = list(features)
        if not ids:
            return PRELABELS.empty()
        proba = self.scene_model.predict_proba(np.stack([features[i].scene for i in ids]))
        rows = pd.DataFrame({"item_id": ids, "kind": "choice", "label": self.scene_model.classes_[proba.argmax(1)],
                             "x_min": np.nan, "y_min": np.nan, "x_max": np.nan, "y_max": np.nan,
                             "score": proba.max(1)})
        counts = np.array([len(features[i].boxes) for i in ids])
        frames = [rows]
        if counts.sum():
            boxes = np.concatenate([features[i].boxes for i in ids])
            proba = self.object_model.predict_proba(np.concatenate([features[i].regions for i in ids]))
            objects = pd.DataFrame({"item_id": np.repeat(ids, counts), "kind": "box",
                                    "label": self.object_model.classes_[proba.argmax(1)], "x_min": boxes[:, 0],
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
                "source": self.source, "features": FEATURE_VERSION, "metrics": self.metrics}

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
                   dict(card.get("metrics") or {}), str(card.get("source") or "gold"))


def save_model(model: PrelabelModel, root: Path) -> str:
    """Store the model (skops + JSON card) and record its sha256 in the audit log; the sha256."""
    layout = DataLayout(root)
    data = model.to_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    write_bytes_atomic(layout.prelabel_model, data)
    write_bytes_atomic(layout.prelabel_model_card, json.dumps(model.card(sha256), indent=2).encode())
    append_audit_event(root, MODEL_SAVED_EVENT, model_version=model.version, sha256=sha256,
                       path=layout.relative(layout.prelabel_model), source=model.source)
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


def _region_targets(features: dict[str, ImageFeatures], ids: list[str], objects: pd.DataFrame
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Region features and their classes: a proposal overlapping a labeled object (IoU >= 0.5)
    learns its class, the others ``__background__``, so the detector can say "nothing here"."""
    by_item = {k: g for k, g in objects.groupby("item_id")}
    feats, targets = [], []
    for i in ids:  # per image: proposals are matched to that image's truth only
        boxes = features[i].boxes
        if not len(boxes):
            continue
        target = np.full(len(boxes), BACKGROUND_LABEL, dtype=object)
        truth = by_item.get(i)
        if truth is not None:
            iou = _box_iou(boxes, truth[["x_min", "y_min", "x_max", "y_max"]].to_numpy(float))
            best = iou.argmax(1)
            hit = iou[np.arange(len(boxes)), best] >= MATCH_IOU
            target[hit] = truth["label"].to_numpy()[best[hit]]
        feats.append(features[i].regions); targets.append(target)
    if not feats:
        raise ValueError("training the pre-label model needs images with object proposals; none had any")
    return np.concatenate(feats), np.concatenate(targets)


def _calibrated(estimator, y: np.ndarray, method: str):
    """``estimator`` wrapped in cross-validated calibration: every calibrator is fitted on the
    folds its classifier did not see. Falls back to the raw estimator when a class has fewer
    labels than folds (the card says so)."""
    folds = min(CALIBRATION_FOLDS, int(pd.Series(y).value_counts().min()))
    if folds < 2:
        return estimator, "none (a class has a single label)"
    return CalibratedClassifierCV(estimator, method=method, cv=folds), f"{method}, {folds}-fold"


def model_version(ids: list[str], labels: pd.DataFrame, seed: int) -> str:
    """The hash of what the model learned from (items, labels, boxes) and how (features, seed)."""
    fingerprint = hashlib.sha256()
    fingerprint.update(f"{FEATURE_VERSION};{MODEL_RECIPE};seed={seed}".encode())
    fingerprint.update(",".join(ids).encode())
    table = labels[["item_id", "kind", "label", "x_min", "y_min", "x_max", "y_max"]].copy()
    table[["x_min", "y_min", "x_max", "y_max"]] = table[["x_min", "y_min", "x_max", "y_max"]].astype(float).round(2)
    table = table.astype(str).sort_values(list(table.columns), kind="stable")
    fingerprint.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return f"prelabel-{fingerprint.hexdigest()[:12]}"


def train_prelabel_model(images: dict[str, np.ndarray], labels: pd.DataFrame, seed: int = 0,
                         source: str = "gold", features: dict[str, ImageFeatures] | None = None) -> PrelabelModel:
    """Train on {item_id: rgb} and their labels (choice rows + object rows, pixel boxes).

    Scene: logistic regression on colour histograms and HOG. Objects: a random forest on region
    proposals' HOG, colour histograms and shape. Both isotonic-calibrated (``_calibrated``).
    ``source`` names the training data on the card ("gold", "release v0003"); ``features``
    (``featurize(images)``) saves computing them again.
    """
    features = features if features is not None else featurize(images)
    scenes = labels[labels["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
    ids = [i for i in sorted(images) if i in scenes.index]
    if len(set(scenes.loc[ids])) < 2:
        raise ValueError("training the pre-label model needs labeled items of at least two scene classes")
    x_scene, y_scene = np.stack([features[i].scene for i in ids]), scenes.loc[ids].astype(str).to_numpy()
    scene_model, scene_calibration = _calibrated(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5)), y_scene, "isotonic")
    scene_model.fit(x_scene, y_scene)

    objects = labels[(labels["kind"] != "choice") & labels["item_id"].isin(ids) & labels["x_min"].notna()]
    x_obj, y_obj = _region_targets(features, ids, objects)
    forest = RandomForestClassifier(n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1)
    object_model, object_calibration = _calibrated(forest, y_obj, "isotonic")
    object_model.fit(x_obj, y_obj)

    used = labels[labels["item_id"].isin(ids)]
    metrics = {"train_items": len(ids), "train_regions": len(y_obj),
               "scene_calibration": scene_calibration, "object_calibration": object_calibration,
               "scene_train_accuracy": float(scene_model.score(x_scene, y_scene)),
               "object_train_accuracy": float(object_model.score(x_obj, y_obj))}
    return PrelabelModel(scene_model, object_model, model_version(ids, used, seed), len(ids), metrics, source)


def release_training_set(released: pd.DataFrame, image_paths: dict[str, Path], exclude: set[str]
                         ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Images and labels to retrain on from a release's labels, leaving out ``exclude`` (the gold
    items, kept apart to measure the model), items whose image is not on this machine, and
    machine labels (auto-accepted pre-labels: learning from them would only confirm the model)."""
    machine = released["label_source"].eq("machine") if "label_source" in released else False
    keep = released[~released["item_id"].isin(exclude) & released["item_id"].isin(image_paths) & ~machine]
    images = {i: load_rgb(image_paths[i]) for i in sorted(keep["item_id"].unique()) if image_paths[i].is_file()}
    return images, keep[keep["item_id"].isin(images)].reset_index(drop=True)


def out_of_fold_predictions(images: dict[str, np.ndarray], labels: pd.DataFrame, version: str, folds: int = 3,
                            seed: int = 0) -> pd.DataFrame:
    """PRELABELS of every image by a model trained the same way *without* it (k-fold), named
    ``version``: how a model trained on all of them does on items it has not seen. The
    evidence of a model trained on the gold set itself, which has no other held-out gold."""
    ids = np.array(sorted(images))
    features = featurize(images)  # once: the folds differ only in what they fit on
    order = np.random.default_rng(seed).permutation(len(ids))
    frames = []
    for k in range(folds):
        held = set(ids[order[k::folds]])
        train = {i: images[i] for i in ids if i not in held}
        model = train_prelabel_model(train, labels[labels["item_id"].isin(train)], seed=seed, features=features)
        frames.append(model.predict_features({i: features[i] for i in sorted(held)}))
    return PRELABELS.conform(pd.concat(frames, ignore_index=True).assign(model_version=version))


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
