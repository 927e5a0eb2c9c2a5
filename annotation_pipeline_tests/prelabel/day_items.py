"""The stand-in upstream of the prelabel tests that run an asset through Dagster: a day's
anonymized images on disk, and the ``anonymized_items`` asset that names them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from PIL import Image

from annotation_pipeline.defs.common import daily_partitions
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.sample_world.sample_data import render_scene

DAY = "2026-11-21"


def save_day_images(root: Path, images: list[Image.Image | np.ndarray]) -> Path:
    """``item0.png``, ``item1.png``, ... in the day's anonymized folder under ``root``."""
    folder = DataLayout(root).anonymized(DAY)
    folder.mkdir(parents=True)
    for k, image in enumerate(images):
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(folder / f"item{k}.png")
    return root


def save_day_scenes(root: Path, n: int, seed: int = 7) -> Path:
    """``n`` sample-world scenes as the day's anonymized images."""
    rng = np.random.default_rng(seed)
    return save_day_images(root, [render_scene(rng, (160, 120))[0] for _ in range(n)])


def anonymized_items_asset(n: int) -> dg.AssetsDefinition:
    """``anonymized_items`` naming ``item0`` .. ``item{n-1}`` of the day."""
    @dg.asset(name="anonymized_items", partitions_def=daily_partitions)
    def anonymized_items(data_root: DataRoot) -> pd.DataFrame:
        layout = data_root.layout
        return pd.DataFrame({"item_id": [f"item{k}" for k in range(n)],
                             "image_path": [layout.relative(layout.anonymized(DAY) / f"item{k}.png")
                                            for k in range(n)]})

    return anonymized_items
