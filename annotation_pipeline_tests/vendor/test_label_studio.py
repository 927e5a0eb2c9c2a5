"""Label Studio projects from the ontology, and batches prepared for an idempotent import."""

import json
import xml.etree.ElementTree as ET

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.label_studio import batch_tasks_for_import, label_config


def test_the_labeling_config_offers_every_ontology_class_under_its_control():
    ontology = load_ontology()
    view = ET.fromstring(label_config(ontology))
    assert view.find("Image").get("value") == "$image"
    scene = view.find("Choices")
    assert scene.get("name") == ontology.raw["scene"]["from_name"]
    assert [c.get("value") for c in scene] == list(ontology.scene_classes)
    for tag, geometry in (("RectangleLabels", "box"), ("PolygonLabels", "polygon")):
        offered = {label.get("value"): control.get("name") for control in view.iter(tag) for label in control}
        expected = {name: spec["from_name"] for name, spec in ontology.raw["objects"].items()
                    if spec["geometry"] == geometry}
        assert offered == expected


def test_batch_tasks_carry_a_key_and_keep_their_predictions_and_nothing_says_gold():
    handoff = [{"id": 7, "data": {"image": "images/t00007.png"},
                "predictions": [{"model_version": "prelabel-abc", "result": [], "score": 0.5}]}]
    tasks = batch_tasks_for_import(json.dumps(handoff).encode(), "simvendor-2026-11-29-x",
                                   "/data/local-files/?d=vendors/v/outbox/b/images/{image}")
    assert tasks == [{"data": {"image": "/data/local-files/?d=vendors/v/outbox/b/images/t00007.png",
                               "task_key": "simvendor-2026-11-29-x/7", "task_id": "7"},
                      "predictions": [{"model_version": "prelabel-abc", "result": [], "score": 0.5}]}]
