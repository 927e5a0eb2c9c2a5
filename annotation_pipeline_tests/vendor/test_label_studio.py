"""Label Studio projects from the ontology, and batches prepared for an idempotent import."""

import json
import xml.etree.ElementTree as ET

import pytest

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.label_studio import (
    LabelStudioClient,
    LabelStudioError,
    batch_tasks_for_import,
    label_config,
    local_files_url,
    returned_export,
)
from annotation_pipeline.vendor.label_studio_format import parse_label_studio


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


def test_batch_tasks_carry_a_key_and_keep_their_predictions_and_nothing_says_gold(tmp_path):
    handoff = [{"id": 7, "data": {"image": "images/t00007.png"},
                "predictions": [{"model_version": "prelabel-abc", "result": [], "score": 0.5}]}]
    image = tmp_path / "outbox" / "b" / "images" / "t00007.png"
    url = local_files_url(image, str(tmp_path))
    tasks = batch_tasks_for_import(json.dumps(handoff).encode(), "simvendor-2026-11-29-x", {"t00007.png": url})
    assert url == "/data/local-files/?d=outbox/b/images/t00007.png"
    assert tasks == [{"data": {"image": url, "task_key": "simvendor-2026-11-29-x/7", "task_id": "7"},
                      "predictions": [{"model_version": "prelabel-abc", "result": [], "score": 0.5}]}]


def test_an_export_comes_back_with_our_task_ids_images_and_annotators():
    answer = {"id": 31, "completed_by": 5, "lead_time": 2.0,
              "result": [{"from_name": "scene", "to_name": "image", "type": "choices", "value": {"choices": ["day"]}}]}
    export = [
        {"id": 901, "data": {"image": "/data/local-files/?d=srv/outbox/b/images/t00003-ab.png",
                             "task_key": "acme-2026-11-29-ab/3", "task_id": "3"}, "annotations": [answer]},
        {"id": 902, "data": {"image": "https://bucket.s3/vendors/b/images/t00004-ab.png?X-Amz-Signature=a%2Fb",
                             "task_key": "acme-2026-11-29-ab/4", "task_id": "4"}, "annotations": []},
        # added in Label Studio by hand, or another batch's: kept, under a name intake quarantines
        {"id": 903, "data": {"image": "/data/upload/x.png"}, "annotations": [answer]},
        {"id": 904, "data": {"image": "x.png", "task_key": "other-batch/5", "task_id": "5"}, "annotations": []},
    ]
    back = returned_export(export, "acme-2026-11-29-ab", {5: "ann-01@acme.example"})
    assert [t["id"] for t in back] == [3, 4, "label-studio-903", "label-studio-904"]
    assert [t["data"]["image"] for t in back] == ["t00003-ab.png", "t00004-ab.png", "x.png", "x.png"]
    assert back[0]["annotations"][0]["completed_by"] == {"id": 5, "email": "ann-01@acme.example"}
    parsed = parse_label_studio(back)
    assert parsed["annotator_id"].iloc[0] == "ann-01"
    assert list(parsed["problem"]) == ["", "invalid_task_id", "invalid_task_id"]
    assert "label-studio-903" in parsed["problem_detail"].iloc[1]


def test_a_server_that_is_down_is_named_with_what_to_do():
    client = LabelStudioClient("http://127.0.0.1:9", "not-a-real-token", timeout_s=2)
    assert not client.health()
    with pytest.raises(LabelStudioError, match=r"http://127.0.0.1:9 is not reachable.*\.ci/label-studio start"):
        client.find_project("acme-2026-11-29-ab")
    assert "not-a-real-token" not in repr(client)


def test_project_titles_longer_than_label_studio_keeps_are_refused_before_any_call():
    client = LabelStudioClient("http://127.0.0.1:9", "t", timeout_s=2)
    with pytest.raises(LabelStudioError, match="50"):
        client.ensure_project("v" * 51, "<View/>", 3)


def test_the_label_studio_exchange_is_chosen_by_configuration_and_its_token_stays_out_of_sight(tmp_path, monkeypatch):
    from annotation_pipeline.defs.label_studio_vendor import LabelStudioVendor
    from annotation_pipeline.defs.resources import LocalFolderVendor, build_resources
    from annotation_pipeline.settings import SettingsError, load_settings

    token = "s3cr3t-label-studio-token-value"
    env = {"ANNOTATION_PIPELINE_VENDOR_EXCHANGE": "label_studio", "LABEL_STUDIO_API_TOKEN": token,
           "LABEL_STUDIO_URL": "http://ls.internal:8080/"}
    settings = load_settings(env, root=tmp_path)
    assert (settings.vendor_exchange, settings.label_studio_url) == ("label_studio", "http://ls.internal:8080")
    assert settings.label_studio_token() == token and token not in repr(settings)
    assert load_settings({}, root=tmp_path).vendor_exchange == "folder"
    with pytest.raises(SettingsError, match="ANNOTATION_PIPELINE_VENDOR_EXCHANGE='s3'"):
        load_settings({"ANNOTATION_PIPELINE_VENDOR_EXCHANGE": "s3"}, root=tmp_path)  # the local profile has no bucket
    production = load_settings({"ANNOTATION_PIPELINE_PROFILE": "production", **env, "LABEL_STUDIO_API_TOKEN": ""})
    with pytest.raises(SettingsError, match="LABEL_STUDIO_API_TOKEN is not set"):
        production.label_studio_token()

    assert isinstance(build_resources("local", tmp_path)["vendor"], LocalFolderVendor)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    vendor = build_resources("local", tmp_path)["vendor"]
    assert isinstance(vendor, LabelStudioVendor) and vendor.url == "http://ls.internal:8080"
    assert token not in repr(vendor) and token not in json.dumps(vendor._convert_to_config_dictionary(), default=str)
    assert vendor.client().token == token
