"""An external pre-label model behind HTTP, speaking the Label Studio ML-backend protocol.

A team that already has a detector serves it as a Label Studio ML backend
(``label_studio_ml``'s ``POST /predict``): the body is ``{"tasks": [{"id", "data": {"image"}}],
"params": {...}}``, the answer ``{"results": [one prediction per task, in order],
"model_version": ...}``, each prediction ``{"result": [...], "score", "model_version"}`` with
result items of type ``choices`` (``value.choices``) or ``rectanglelabels`` (``value.x, y,
width, height`` in percent of the image, ``value.rectanglelabels``) and an optional per-item
``score``. Images go inline as ``data:image/png;base64,...`` URIs: the backend needs no access
to our storage and nothing of ours is exposed on a URL.

What comes back is judged like a vendor file: an answer that is not the protocol (not JSON,
no ``results``, a different number of predictions, no model version) stops the step with a
one-line reason; a single result item that is unusable (unknown type, label, box outside the
image) is quarantined with a reason and the rest of the answer is used.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from annotation_pipeline.contracts import PRELABELS, QUARANTINE

QUARANTINE_STAGE = "prelabel"
_QUARANTINE_FILE = "ml-backend /predict"


class MLBackendError(RuntimeError):
    """The ML backend did not answer with usable predictions; the message says why, in one line."""


@dataclass(frozen=True)
class PredictionBatch:
    """Pre-labels of a set of images, the model version that made them, and what was refused."""

    prelabels: pd.DataFrame     # contracts.PRELABELS
    model_version: str
    quarantined: pd.DataFrame   # contracts.QUARANTINE rows (stage "prelabel"), empty when all was usable


def png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def predict_request(images: dict[str, np.ndarray]) -> dict:
    """The ``/predict`` body: one task per image, ids are our item ids."""
    return {"tasks": [{"id": item_id, "data": {"image": png_data_uri(rgb)}} for item_id, rgb in images.items()],
            "params": {"context": None}}


def post_predict(url: str, body: dict, timeout_s: float, token: str | None = None) -> dict:
    """POST ``body`` to ``<url>/predict``; the decoded JSON answer, or MLBackendError in one line."""
    endpoint = url.rstrip("/") + "/predict"
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read(200).decode("utf-8", "replace").strip().splitlines()
        raise MLBackendError(f"ML backend {endpoint} answered HTTP {exc.code}"
                             + (f": {detail[0]}" if detail else "")) from None
    except TimeoutError:
        raise MLBackendError(f"ML backend {endpoint} did not answer within {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise MLBackendError(f"ML backend {endpoint} did not answer within {timeout_s:g} s") from None
        raise MLBackendError(f"ML backend {endpoint} cannot be reached: {reason}") from None
    try:
        answer = json.loads(raw)
    except ValueError:
        raise MLBackendError(f"ML backend {endpoint} answered something that is not JSON "
                             f"({len(raw)} bytes starting {raw[:40]!r})") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise MLBackendError(f"ML backend {endpoint} answered JSON without a `results` list: not the Label "
                             "Studio ML-backend protocol")
    return answer


def _box_from_percent(value: dict, width: int, height: int) -> tuple[float, float, float, float] | None:
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return None
    if not all(np.isfinite([x, y, w, h])) or w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > 100.5 or y + h > 100.5:
        return None
    return x * width / 100, y * height / 100, min(x + w, 100) * width / 100, min(y + h, 100) * height / 100


def _score(*candidates) -> float | None:
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
    return None


def _result_row(item: object, prediction: dict, item_id: str, size: tuple[int, int],
                classes: set[str]) -> tuple[dict | None, str]:
    """One PRELABELS row from a result item, or (None, why it is unusable)."""
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        return None, "a result item is not an object with a `value`"
    kind = {"choices": "choice", "rectanglelabels": "box"}.get(item.get("type"))
    if kind is None:
        return None, f"result type {item.get('type')!r} is not choices or rectanglelabels"
    names = item["value"].get(item["type"])
    if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
        return None, f"`value.{item['type']}` must hold exactly one label"
    if classes and names[0] not in classes:
        return None, f"label {names[0]!r} is not in the ontology"
    score = _score(item.get("score"), item["value"].get("score"), prediction.get("score"))
    if score is None:
        return None, "no score in [0, 1] on the result item or its prediction"
    box = (np.nan,) * 4
    if kind == "box":
        box = _box_from_percent(item["value"], *size)
        if box is None:
            return None, "box x/y/width/height are not percentages inside the image"
    return {"item_id": item_id, "kind": kind, "label": names[0], "x_min": box[0], "y_min": box[1],
            "x_max": box[2], "y_max": box[3], "score": score}, ""


def parse_predictions(answer: dict, items: list[tuple[str, int, int]], classes: set[str], endpoint: str,
                      partition_date: str = "") -> PredictionBatch:
    """PRELABELS rows from a ``/predict`` answer to tasks ``items`` ((item_id, width, height), in order)."""
    results = answer["results"]
    if len(results) != len(items):
        raise MLBackendError(f"ML backend {endpoint} answered {len(results)} predictions for {len(items)} tasks")
    version = answer.get("model_version") or next(
        (r.get("model_version") for r in results if isinstance(r, dict) and r.get("model_version")), None)
    if not isinstance(version, str) or not version.strip():
        raise MLBackendError(f"ML backend {endpoint} answered without a model_version: every pre-label must "
                             "name the model that made it")
    rows, refused = [], []
    for (item_id, width, height), prediction in zip(items, results):  # JSON answers: one task at a time
        if not isinstance(prediction, dict) or not isinstance(prediction.get("result"), list):
            refused.append((item_id, "", "the prediction has no `result` list"))
            continue
        for k, item in enumerate(prediction["result"]):
            row, why = _result_row(item, prediction, item_id, (width, height), classes)
            rows.append(row) if row else refused.append((item_id, f"result {k}", why))
    prelabels = (PRELABELS.conform(pd.DataFrame(rows).assign(model_version=version.strip())) if rows
                 else PRELABELS.empty())
    quarantined = QUARANTINE.conform(pd.DataFrame({
        "stage": QUARANTINE_STAGE, "partition_date": partition_date, "source_file": _QUARANTINE_FILE,
        "record_ref": [f"task {i}" + (f" {ref}" if ref else "") for i, ref, _ in refused],
        "reason": "ml_backend_unusable_prediction", "detail": [why for _, _, why in refused],
        "item_id": [i for i, _, _ in refused], "annotator_id": None, "annotation_id": None,
    }, index=range(len(refused)))) if refused else QUARANTINE.empty()
    return PredictionBatch(prelabels, version.strip(), quarantined)


def predict_over_http(url: str, images: dict[str, np.ndarray], classes: set[str], timeout_s: float = 30.0,
                      token: str | None = None, partition_date: str = "") -> PredictionBatch:
    """Ask the ML backend at ``url`` for pre-labels of {item_id: rgb}."""
    if not images:
        return PredictionBatch(PRELABELS.empty(), "none", QUARANTINE.empty())
    answer = post_predict(url, predict_request(images), timeout_s, token)
    items = [(item_id, rgb.shape[1], rgb.shape[0]) for item_id, rgb in images.items()]
    return parse_predictions(answer, items, classes, url.rstrip("/") + "/predict", partition_date)
