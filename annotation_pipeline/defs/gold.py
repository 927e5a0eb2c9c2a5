"""The program team's gold set on the data root, as the stages read it (no asset of its own)."""

from __future__ import annotations

import pandas as pd

from annotation_pipeline.contracts import GOLD_LABELS
from annotation_pipeline.defs.resources import DataRoot


def read_gold(data_root: DataRoot) -> pd.DataFrame:
    """GOLD_LABELS: the known answers (empty without a gold set)."""
    path = data_root.layout.gold_labels
    return pd.read_parquet(path) if path.exists() else GOLD_LABELS.empty()


def gold_items(data_root: DataRoot) -> pd.DataFrame:
    """The gold images: item id, path and size."""
    from PIL import Image

    images = sorted(data_root.layout.gold_images.glob("*.png"))
    sizes = [Image.open(p).size for p in images]
    return pd.DataFrame({"item_id": [p.stem for p in images], "image_path": [str(p) for p in images],
                         "width": [s[0] for s in sizes], "height": [s[1] for s in sizes]})
