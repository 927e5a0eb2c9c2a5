"""The production seams against S3, served by moto on loopback: vendor exchange and DVC remote."""

import json
import urllib.request

import boto3
import pandas as pd
import pytest

from annotation_pipeline.contracts import CONSENSUS_LABELS, VENDOR_TASKS
from annotation_pipeline.defs.resources import S3Vendor
from annotation_pipeline.release.store import DvcReleaseStore, merge_into_dataset
from annotation_pipeline.vendor.handoff import VendorBatch

BUCKET = "annotation-program"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


def _batch(tmp_path) -> VendorBatch:
    folder = tmp_path / "staging" / "acme-2026-11-21-abcd"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "t00001.png").write_bytes(b"\x89PNG fake image bytes")
    (folder / "tasks.json").write_text(json.dumps([{"id": 1, "data": {"image": "images/t00001.png"}}]))
    (folder / "manifest.json").write_text("{}")
    tasks = VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": [folder.name], "task_id": ["1"], "item_id": ["i1"], "is_gold": [False], "vendor": ["acme"],
        "image_file": ["t00001.png"], "image_width": [320.0], "image_height": [240.0], "overlap": [3],
        "ontology_version": ["1.0.0"], "guidelines_version": ["1.0.0"], "model_version": ["m"]}))
    return VendorBatch(folder.name, folder, tasks)


def test_a_batch_goes_to_the_vendor_prefix_with_presigned_image_urls(s3, s3_endpoint, tmp_path):
    vendor = S3Vendor(vendor="acme", bucket=BUCKET, endpoint_url=s3_endpoint, download_root=str(tmp_path / "dl"))
    batch = _batch(tmp_path)
    location = vendor.deliver(batch)
    assert location == f"s3://{BUCKET}/vendors/acme/outbox/{batch.batch_id}"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="vendors/acme/outbox/")["Contents"]}
    base = f"vendors/acme/outbox/{batch.batch_id}"
    assert keys == {f"{base}/images/t00001.png", f"{base}/tasks.json", f"{base}/manifest.json",
                    f"{base}/presigned_urls.json"}
    urls = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{base}/presigned_urls.json")["Body"].read())
    with urllib.request.urlopen(urls["t00001.png"], timeout=10) as response:  # the vendor needs no credentials
        assert response.read() == b"\x89PNG fake image bytes"


def test_vendor_returns_are_collected_from_the_inbox_prefix(s3, s3_endpoint, tmp_path):
    vendor = S3Vendor(vendor="acme", bucket=BUCKET, endpoint_url=s3_endpoint, download_root=str(tmp_path / "dl"))
    s3.put_object(Bucket=BUCKET, Key="vendors/acme/inbox/b1/export-1.json", Body=b"[]")
    s3.put_object(Bucket=BUCKET, Key="vendors/acme/inbox/b1/late/export-2.json", Body=b"[1]")
    inbox, files = vendor.collect_returns("b1")
    assert [f.name for f in files] == ["export-1.json", "late_export-2.json"]
    assert all(f.is_relative_to(inbox / "b1") for f in files)
    assert files[1].read_bytes() == b"[1]"
    assert vendor.collect_returns("no-such-batch")[1] == []


def test_releases_push_to_an_s3_dvc_remote(s3, s3_endpoint, tmp_path):
    store = DvcReleaseStore(tmp_path / "root", f"s3://{BUCKET}/dvc", endpoint_url=s3_endpoint)
    labels = merge_into_dataset(None, CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": ["i1"], "kind": ["box"], "label": ["car"], "x_min": [1.0], "y_min": [2.0], "x_max": [9.0],
        "y_max": [8.0], "geometry_wkb": [None], "confidence": [0.9], "n_annotators": [3], "n_assigned": [3],
        "method": ["iou_cluster"], "annotation_ids": ["a b c"]})), "2026-11-21")
    info = store.publish(labels, pd.DataFrame({"item_id": ["i1"]}), {}, ["2026-11-21"], {})
    pushed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="dvc/")["Contents"]]
    assert any(k.endswith(".dir") for k in pushed) and len(pushed) >= 6
    assert info.remote == f"s3://{BUCKET}/dvc"


# --- tables on S3 -----------------------------------------------------------------------------

def _s3_io_manager(s3_endpoint, prefix="pipeline"):
    from dagster_aws.s3 import S3Resource

    from annotation_pipeline.defs.resources import S3ParquetIOManager

    return S3ParquetIOManager(s3=S3Resource(endpoint_url=s3_endpoint), bucket=BUCKET, prefix=prefix)


def test_asset_tables_land_in_the_bucket_as_parquet_under_their_partition_keys(s3, s3_endpoint):
    import io

    import dagster as dg

    days = dg.StaticPartitionsDefinition(["2026-11-20", "2026-11-21"])

    @dg.asset(partitions_def=days)
    def scores(context) -> pd.DataFrame:
        return pd.DataFrame({"day": [context.partition_key] * 2, "score": [1.5, 2.5]})

    @dg.asset
    def all_scores(scores: pd.DataFrame) -> pd.DataFrame:
        return scores.assign(n=len(scores))

    io_manager = _s3_io_manager(s3_endpoint, prefix="e2e-tables")
    for day in days.get_partition_keys():
        assert dg.materialize([scores], partition_key=day, resources={"io_manager": io_manager}).success
    result = dg.materialize([scores, all_scores], selection=[all_scores], resources={"io_manager": io_manager})
    assert result.success
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="e2e-tables/")["Contents"])
    assert keys == ["e2e-tables/tables/all_scores/all.parquet", "e2e-tables/tables/scores/2026-11-20.parquet",
                    "e2e-tables/tables/scores/2026-11-21.parquet"]
    body = s3.get_object(Bucket=BUCKET, Key=keys[1])["Body"].read()
    assert body[:4] == b"PAR1"  # Parquet, never a pickle
    combined = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()))
    assert sorted(combined["day"]) == ["2026-11-20"] * 2 + ["2026-11-21"] * 2 and set(combined["n"]) == {4}


def test_a_table_that_fails_to_serialize_leaves_the_previous_object_whole(s3, s3_endpoint):
    from dagster_aws.s3 import S3Resource

    from annotation_pipeline.defs.resources import S3TableStore

    store = S3TableStore(s3=S3Resource(endpoint_url=s3_endpoint), bucket=BUCKET, prefix="atomic")
    store.write_table("tables/t/2026-11-21.parquet", pd.DataFrame({"a": [1, 2, 3]}))
    unwritable = pd.DataFrame({"a": [1, "two", object()]})  # pyarrow cannot type this column
    with pytest.raises(Exception):
        store.write_table("tables/t/2026-11-21.parquet", unwritable)
    assert store.read_table("tables/t/2026-11-21.parquet")["a"].tolist() == [1, 2, 3]
    assert store.list_keys("tables/") == ["tables/t/2026-11-21.parquet"]
    assert store.read_table("tables/t/missing.parquet") is None


def test_the_quarantine_of_the_production_profile_crosses_steps_through_the_bucket(s3, s3_endpoint, tmp_path):
    from annotation_pipeline.contracts import QUARANTINE
    from annotation_pipeline.defs.resources import build_resources

    env = {"ANNOTATION_PIPELINE_S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": s3_endpoint,
           "ANNOTATION_PIPELINE_S3_PREFIX": "q-test"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        data_root = build_resources("production", tmp_path)["data_root"]
    for stage, day in [("ingestion", "2026-11-21"), ("intake", "2026-11-21"), ("intake", "2026-11-22")]:
        one = pd.DataFrame({c: [None] for c in QUARANTINE.empty().columns}).assign(
            stage=stage, partition_date=day, source_file="f.json", record_ref="", reason=f"bad {day}", detail="d")
        assert data_root.write_quarantine(stage, day, one).startswith(f"s3://{BUCKET}/q-test/quarantine/")
    day = data_root.read_quarantine("2026-11-21")
    assert sorted(day["stage"]) == ["ingestion", "intake"] and set(day["reason"]) == {"bad 2026-11-21"}
    assert not (tmp_path / "quarantine").exists()  # nothing on the local disk
