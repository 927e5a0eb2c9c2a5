"""A batch through a live Label Studio server and back: the `label_studio` tests (the `label_studio`
fixture starts the server when it is down).

Each test session uses a vendor name of its own, so its batch is a new project on a server
that keeps earlier sessions' projects; the project and the accounts are removed afterwards.
"""

import json
import urllib.request
import uuid

import boto3
import pandas as pd
import pytest

from annotation_pipeline.contracts import ANONYMIZED_ITEMS
from annotation_pipeline.defs.label_studio_vendor import LabelStudioVendor
from annotation_pipeline.defs.resources import simulated_answers
from annotation_pipeline.layout import BatchFolder, DataLayout
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.sample_world.workforce import write_label_studio_exports
from annotation_pipeline.settings import load_settings
from annotation_pipeline.vendor.handoff import build_vendor_batch
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline.vendor.label_studio import annotator_email, image_file_of

pytestmark = [pytest.mark.label_studio, pytest.mark.xdist_group("label_studio")]  # one shared server

DAY = "2026-11-21"
MODEL = "prelabel-ls-test"
GEOMETRY = ["kind", "label", "x_min", "y_min", "x_max", "y_max"]


def _prelabels(item_ids: list[str]) -> pd.DataFrame:
    """A scene guess and a car box per item, as the pre-label model writes them."""
    rows = []
    for item in item_ids:
        rows.append({"item_id": item, "kind": "choice", "label": "day", "score": 0.8,
                     "x_min": float("nan"), "y_min": float("nan"), "x_max": float("nan"), "y_max": float("nan")})
        rows.append({"item_id": item, "kind": "box", "label": "car", "score": 0.6,
                     "x_min": 10.0, "y_min": 20.0, "x_max": 60.0, "y_max": 50.0})
    return pd.DataFrame(rows).assign(model_version=MODEL, geometry_wkb=None)


def _build(root, vendor: str, staging: str):
    paths = sorted((root / "gold" / "images").glob("*.png"))
    queued = paths[:4]
    items = ANONYMIZED_ITEMS.conform(pd.DataFrame({
        "item_id": [p.stem for p in queued], "partition_date": DAY,
        "image_path": [str(p.relative_to(root)) for p in queued], "width": 320, "height": 240,
        "metadata_json": "{}", "caption": None, "n_redactions": 0}))
    gold = pd.DataFrame({"item_id": [p.stem for p in paths[10:14]], "image_path": [str(p) for p in paths[10:14]],
                         "width": 320, "height": 240})
    return build_vendor_batch(pd.DataFrame({"item_id": items["item_id"]}), items, _prelabels(list(items["item_id"])),
                              gold, root, root / staging, vendor=vendor, partition_date=DAY, overlap=2, n_gold=2,
                              ontology=load_ontology(), guidelines=load_guidelines())


@pytest.fixture(scope="module")
def sent(label_studio, gold_root, tmp_path_factory):
    """One batch of 4 queued items and 2 hidden gold tasks, overlap 2, answered by the workforce."""
    root = tmp_path_factory.mktemp("ls_root")
    (root / "gold").symlink_to(gold_root / "gold")
    vendor_name = f"lst{uuid.uuid4().hex[:8]}"
    vendor = LabelStudioVendor(vendor=vendor_name, url=load_settings().label_studio_url, root=str(root))
    batch = _build(root, vendor_name, "staging-1")
    location = vendor.deliver(batch)
    project = label_studio.find_project(batch.batch_id)
    yield vendor, batch, project, location, root
    label_studio._call("DELETE", f"/api/projects/{project['id']}/")
    for user in label_studio.users():
        if user["email"].endswith(f"@{vendor_name}.example"):
            label_studio._call("DELETE", f"/api/users/{user['id']}/")


def test_a_batch_goes_out_and_comes_back_with_the_counts_reconciled(sent, label_studio, tmp_path):
    vendor, batch, project, location, root = sent
    assert location.endswith(f"/projects/{project['id']}")
    inbox, files = vendor.collect_returns(batch.batch_id)
    result = intake_vendor_returns(files, inbox, batch.tasks, load_ontology(), vendor=vendor.vendor)
    answers, profiles = simulated_answers(root, batch)
    assert result.reconciles and result.n_received == len(answers)
    assert result.n_accepted == len(answers), result.quarantine[["reason", "detail"]].to_string()
    # k distinct accounts answered each task, gold tasks included, each as the annotator's own account
    per_task = result.annotations.groupby("task_id")["annotator_id"].nunique()
    assert len(per_task) == len(batch.tasks) and (per_task == 2).all()
    assert set(result.annotations["annotator_id"]) <= {p.id for p in profiles}
    # The same answers written as folder exports read back the same: one intake, whichever exchange.
    folder_inbox = tmp_path / "inbox"
    folder_files = write_label_studio_exports(answers, batch.tasks, profiles, folder_inbox / batch.batch_id,
                                              vendor.vendor)
    by_folder = intake_vendor_returns(folder_files, folder_inbox, batch.tasks, load_ontology(), vendor=vendor.vendor)
    keys = ["task_id", "annotator_id", *GEOMETRY]
    ours = result.annotations[keys].sort_values(keys, ignore_index=True)
    theirs = by_folder.annotations[keys].sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False, atol=1e-6)


def test_predictions_appear_in_label_studio_with_their_model_version(sent, label_studio):
    _, batch, project, _, _ = sent
    tasks = label_studio.tasks(project["id"])
    predicted = {t["data"]["task_id"]: t["predictions"] for t in tasks if t["predictions"]}
    queued = set(batch.tasks.loc[~batch.tasks["is_gold"], "task_id"])
    assert set(predicted) == queued
    assert {p["model_version"] for ps in predicted.values() for p in ps} == {MODEL}
    assert all(r["type"] in ("choices", "rectanglelabels") for ps in predicted.values() for r in ps[0]["result"])
    # Nothing Label Studio holds says which tasks are gold or which item a task is.
    shown = json.dumps([{"data": t["data"], "meta": t["meta"]} for t in tasks])
    assert "gold" not in shown and not any(item in shown for item in batch.tasks["item_id"])
    assert project["maximum_annotations"] == 2
    assert project["model_version"] == MODEL  # the predictions Label Studio pre-fills the editor with


def test_annotators_see_the_batch_images_served_by_label_studio(sent, label_studio):
    vendor, batch, project, _, root = sent
    outbox = DataLayout(root).outbox_batch(vendor.vendor, batch.batch_id)
    for task in label_studio.tasks(project["id"])[:2]:
        served = label_studio.session.get(label_studio.url + task["data"]["image"], timeout=30)
        assert served.status_code == 200
        assert served.content == (BatchFolder(outbox).images / image_file_of(task["data"]["image"])).read_bytes()


def test_a_rerun_of_the_batch_adds_nothing_and_loses_no_answer(sent, label_studio):
    vendor, batch, project, _, root = sent
    before = label_studio.tasks(project["id"])
    _, files = vendor.collect_returns(batch.batch_id)
    export_before = files[0].read_bytes()
    vendor.deliver(_build(root, vendor.vendor, "staging-2"))  # the same selection: the same batch again
    after = label_studio.tasks(project["id"])
    assert label_studio.find_project(batch.batch_id)["id"] == project["id"]
    assert len(after) == len(before) == len(batch.tasks)
    assert sum(len(t["annotations"]) for t in after) == sum(len(t["annotations"]) for t in before) == 2 * len(after)
    assert sum(len(t["predictions"]) for t in after) == sum(len(t["predictions"]) for t in before)
    _, files_again = vendor.collect_returns(batch.batch_id)
    assert files_again == files and files_again[0].read_bytes() == export_before


def test_the_annotators_have_accounts_named_after_them(sent, label_studio):
    vendor, batch, _, _, root = sent
    _, profiles = simulated_answers(root, batch)
    emails = {u["email"] for u in label_studio.users()}
    assert {annotator_email(p.id, vendor.vendor) for p in profiles} <= emails


@pytest.fixture
def s3_bucket(monkeypatch):
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="annotation-program")
    yield endpoint, "annotation-program"
    server.stop()


def test_in_production_the_tasks_carry_presigned_urls_of_the_bucket(label_studio, gold_root, tmp_path, s3_bucket):
    endpoint, bucket = s3_bucket
    (tmp_path / "gold").symlink_to(gold_root / "gold")
    vendor_name = f"lsp{uuid.uuid4().hex[:8]}"
    vendor = LabelStudioVendor(vendor=vendor_name, url=load_settings().label_studio_url, root=str(tmp_path),
                               simulate_workforce=False, s3_bucket=bucket, endpoint_url=endpoint)
    batch = _build(tmp_path, vendor_name, "staging")
    vendor.deliver(batch)
    project = label_studio.find_project(batch.batch_id)
    try:
        assert not batch.folder.exists()  # sent from the bucket: nothing kept locally
        tasks = label_studio.tasks(project["id"])
        image_of = dict(zip(batch.tasks["task_id"], batch.tasks["image_file"]))
        assert {t["data"]["task_id"]: image_file_of(t["data"]["image"]) for t in tasks} == image_of
        with urllib.request.urlopen(tasks[0]["data"]["image"], timeout=10) as served:  # no credentials needed
            assert served.read(8) == b"\x89PNG\r\n\x1a\n"
        assert all("Signature=" in t["data"]["image"] for t in tasks)  # presigned (SigV2 or SigV4)
        inbox, files = vendor.collect_returns(batch.batch_id)  # nobody answered yet: an export of no answers
        assert intake_vendor_returns(files, inbox, batch.tasks, load_ontology(), vendor=vendor_name).n_received == 0
    finally:
        label_studio._call("DELETE", f"/api/projects/{project['id']}/")


def test_a_batch_recorded_as_sent_elsewhere_or_to_a_deleted_project_counts_as_not_sent(label_studio, gold_root,
                                                                                         tmp_path):
    """What the handoff treats as already sent: only batches recorded under this exchange that its
    server still holds; the rest go out again (a root first run with the folder exchange, or a server reset)."""
    from annotation_pipeline.vendor.handoff import record_sent, tasks_sent

    (tmp_path / "gold").symlink_to(gold_root / "gold")
    vendor_name = f"lsr{uuid.uuid4().hex[:8]}"
    vendor = LabelStudioVendor(vendor=vendor_name, url=load_settings().label_studio_url, root=str(tmp_path),
                               simulate_workforce=False)
    layout = DataLayout(tmp_path)

    def sent():
        return tasks_sent(layout, vendor_name, DAY, exchange=vendor.exchange(), holds=vendor.holds)

    batch = _build(tmp_path, vendor_name, "staging")
    record_sent(layout, batch, f"folder at {layout.outbox(vendor_name)}", "somewhere")  # an earlier folder run
    assert sent().empty
    location = vendor.deliver(batch)
    record_sent(layout, batch, vendor.exchange(), location)
    project = label_studio.find_project(batch.batch_id)
    try:
        assert vendor.exchange() == f"label_studio at {vendor.url}" and location.endswith(f"/projects/{project['id']}")
        assert list(sent()["task_id"]) == list(batch.tasks["task_id"])  # there: a rerun sends nothing
    finally:
        label_studio._call("DELETE", f"/api/projects/{project['id']}/")
    assert sent().empty  # the project is gone: the batch goes again
