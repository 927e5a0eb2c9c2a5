"""A release's labels in the formats people train from: COCO and Label Studio JSON.

Both are built from the release's ``labels`` (CONSENSUS_LABELS rows) and the size and file
name of each item's anonymized image; categories come from the ontology, in its order, so
category ids are stable across releases of one ontology version.

- COCO: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories`` (every scene
  and object class, with a ``supercategory`` of ``scene`` or ``object``), ``annotations``:
  boxes as ``bbox`` ``[x, y, width, height]`` in pixels, polygons as ``segmentation`` with their
  ``bbox`` and ``area``, and the scene label as an image-level annotation without geometry.
  Each annotation carries ``score`` (the consensus confidence) and ``annotator_id:
  "consensus"``.
- Label Studio: one task per item with ``data.image``, and the labels as one completed
  annotation (``completed_by`` the consensus), percent coordinates as Label Studio exports
  them; importable into a Label Studio project whose config comes from the same ontology.

Our own intake reads both back with nothing lost (a test holds it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.ontology import Ontology
from annotation_pipeline.vendor.label_studio_format import label_studio_results

CONSENSUS_ANNOTATOR = "consensus"


def categories(ontology: Ontology) -> list[dict[str, Any]]:
    scene = [{"id": i + 1, "name": c, "supercategory": "scene"} for i, c in enumerate(ontology.scene_classes)]
    offset = len(scene)
    objects = [{"id": offset + i + 1, "name": c, "supercategory": "object"}
               for i, c in enumerate(ontology.object_classes)]
    return scene + objects


def _images_of(labels: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Items of the release with an image id, in item order; ``images``: item_id, file_name, width, height."""
    items = pd.DataFrame({"item_id": np.sort(labels["item_id"].astype(str).unique())})
    found = items.merge(images[["item_id", "file_name", "width", "height"]].drop_duplicates("item_id"),
                        on="item_id", how="left")
    missing = found["file_name"].isna()
    if missing.any():
        raise ValueError(f"{int(missing.sum())} released item(s) have no image size (first: "
                         f"{found.loc[missing, 'item_id'].iloc[0]}); pass the anonymized items of every partition")
    found.insert(0, "image_id", np.arange(1, len(found) + 1))
    return found


def to_coco(labels: pd.DataFrame, images: pd.DataFrame, ontology: Ontology, release: str = "") -> dict[str, Any]:
    cats = categories(ontology)
    image_table = _images_of(labels, images)
    category_id = {c["name"]: c["id"] for c in cats}
    rows = labels.merge(image_table[["item_id", "image_id"]], on="item_id").reset_index(drop=True)
    x0, y0 = rows["x_min"].to_numpy(float), rows["y_min"].to_numpy(float)
    w, h = rows["x_max"].to_numpy(float) - x0, rows["y_max"].to_numpy(float) - y0
    annotations = []
    kinds = rows["kind"].to_numpy(object)
    polygon_rows = np.flatnonzero(kinds == "polygon")
    polygons = shapely.from_wkb(rows["geometry_wkb"].to_numpy(object)[polygon_rows])
    segmentation = {int(r): [shapely.get_coordinates(shapely.get_exterior_ring(p))[:-1].round(2).ravel().tolist()]
                    for r, p in zip(polygon_rows, polygons)}
    area = dict(zip(polygon_rows.tolist(), shapely.area(polygons).round(2).tolist()))
    # JSON building, one dict per label, over plain arrays (itertuples cost more than the JSON)
    image_ids = rows["image_id"].to_numpy(np.int64).tolist()
    category_ids = [category_id[label] for label in rows["label"].to_numpy(object)]
    scores = rows["confidence"].to_numpy(float).tolist()
    x0, y0, w, h = x0.tolist(), y0.tolist(), w.tolist(), h.tolist()
    for k, kind in enumerate(kinds.tolist()):
        entry = {"id": k + 1, "image_id": image_ids[k], "category_id": category_ids[k],
                 "score": round(scores[k], 6), "annotator_id": CONSENSUS_ANNOTATOR, "iscrowd": 0}
        if kind == "box":
            entry.update(bbox=[round(x0[k], 2), round(y0[k], 2), round(w[k], 2), round(h[k], 2)],
                         area=round(w[k] * h[k], 2))
        elif kind == "polygon":
            entry.update(segmentation=segmentation[k], area=area[k],
                         bbox=[round(x0[k], 2), round(y0[k], 2), round(w[k], 2), round(h[k], 2)])
        annotations.append(entry)
    return {
        "info": {"description": f"{ontology.name} {release}".strip(), "version": release,
                 "ontology_version": ontology.version},
        "images": [{"id": int(r.image_id), "file_name": r.file_name, "width": int(r.width), "height": int(r.height)}
                   for r in image_table.itertuples(index=False)],
        "categories": cats,
        "annotations": annotations,
    }


def to_label_studio(labels: pd.DataFrame, images: pd.DataFrame, ontology: Ontology,
                    image_url_prefix: str = "images/") -> list[dict[str, Any]]:
    image_table = _images_of(labels, images)
    # the labels item by item (in image_table's order), each item's labels in their order in `labels`
    rows = labels.assign(item_id=labels["item_id"].astype(str)).sort_values("item_id", kind="stable")
    size = image_table.set_index("item_id")
    width = size["width"].astype(float).reindex(rows["item_id"]).to_numpy(float)
    height = size["height"].astype(float).reindex(rows["item_id"]).to_numpy(float)
    results = label_studio_results(rows, width, height, ontology,
                                   ids=("r" + rows.groupby("item_id", sort=False).cumcount().astype(str)).tolist(),
                                   scores=[round(c, 6) for c in rows["confidence"].astype(float).tolist()])
    counts = rows["item_id"].value_counts(sort=False).reindex(image_table["item_id"]).to_numpy()
    ends = np.cumsum(counts)
    tasks = []
    for image, start, end in zip(image_table.itertuples(index=False), ends - counts, ends):  # one task per item
        tasks.append({"id": int(image.image_id),
                      "data": {"image": f"{image_url_prefix}{image.file_name}", "item_id": image.item_id},
                      "annotations": [{"id": int(image.image_id), "completed_by": {"email": f"{CONSENSUS_ANNOTATOR}@release"},
                                       "result": results[start:end], "ground_truth": True}]})
    return tasks
