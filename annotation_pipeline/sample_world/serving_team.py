"""The simulated serving team: a production model's prediction logs, as monitoring reads them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import PREDICTION_LOG
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.sample_world.sample_data import png_bytes, render_scene


def generate_prediction_logs(root: Path, model, date: str, n_images: int, scene_shares: dict[str, float],
                             seed: int = 0, size: tuple[int, int] = (160, 120)) -> Path:
    """What a production model's serving would log for one day: ``n_images`` frames of ``size``
    drawn with ``scene_shares``, stored under ``monitoring/images/<date>/``, and ``model``'s
    scene predictions on them in ``monitoring/predictions/<date>/serving.parquet``
    (PREDICTION_LOG). ``date="reference"`` writes the model's reference predictions instead
    (``monitoring/reference/<model.version>.parquet``). Same arguments, same bytes.
    """
    rng = np.random.default_rng([seed, int(hashlib.sha256(date.encode()).hexdigest()[:8], 16)])
    layout = DataLayout(root)
    image_dir = layout.monitoring_images(date)
    image_dir.mkdir(parents=True, exist_ok=True)
    scenes = rng.choice(list(scene_shares), n_images, p=np.array(list(scene_shares.values())) / sum(scene_shares.values()))
    arrays, paths = [], []
    for i, scene in enumerate(scenes):
        image, _ = render_scene(rng, tuple(size), scene=str(scene))
        path = image_dir / f"frame_{i:05d}.png"
        path.write_bytes(png_bytes(image))
        arrays.append(np.asarray(image))
        paths.append(str(path.relative_to(root)))
    labels, scores = model.predict_scenes(arrays)
    day = "2026-01-01" if date == "reference" else date
    log = PREDICTION_LOG.conform(pd.DataFrame({
        "logged_at": [f"{day}T{h:02d}:{m:02d}:00Z" for h, m in zip(rng.integers(0, 24, n_images), rng.integers(0, 60, n_images))],
        "model_version": model.version, "image_path": paths, "predicted_label": labels.astype(str),
        "confidence": scores.astype(float)}))
    target = (layout.reference_log(model.version) if date == "reference"
              else layout.prediction_log(date, "serving"))
    return write_parquet_atomic(log, target)
