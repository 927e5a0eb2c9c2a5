"""Resources: the seams between assets and the world, one local and one production flavour each.

``ANNOTATION_PIPELINE_PROFILE`` picks the flavour (``local`` when unset, or ``production``);
assets never branch on the environment, they only call these small interfaces.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import QUARANTINE
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.release.store import DvcReleaseStore
from annotation_pipeline.sample_world.sample_data import load_sample_settings
from annotation_pipeline.settings import load_settings
from annotation_pipeline.vendor.handoff import VendorBatch, verify_manifest


class DataRoot(dg.ConfigurableResource):
    """The working data root: landing folders, raw and anonymized stores, tables, releases."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path).resolve()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root)

    def write_quarantine(self, stage: str, partition_date: str, rows: pd.DataFrame) -> Path:
        """Quarantine rows of one stage and partition; replaced, not appended, on a rerun."""
        path = self.layout.quarantine_file(stage, partition_date)
        write_parquet_atomic(QUARANTINE.conform(rows), path)
        return path

    def read_quarantine(self, partition_date: str) -> pd.DataFrame:
        frames = [pd.read_parquet(p) for p in sorted(self.layout.quarantine.glob(f"*/{partition_date}.parquet"))]
        return QUARANTINE.conform(pd.concat(frames, ignore_index=True)) if frames else QUARANTINE.empty()

    def restricted_dir(self) -> Path:
        """Where re-identification maps live: never under vendors/, readable by the owner only."""
        path = self.layout.restricted
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        return path


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """DataFrames as Parquet at ``<base>/tables/<asset>/<partition>.parquet``, written atomically.

    An unpartitioned asset reading a partitioned one gets all its partitions concatenated.
    """

    base_path: str

    def _path(self, key: dg.AssetKey, partition: str | None) -> Path:
        return DataLayout(Path(self.base_path)).table(key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        partition = context.partition_key if context.has_partition_key else None
        write_parquet_atomic(obj, self._path(context.asset_key, partition))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            frames = [pd.read_parquet(p) for k in keys if (p := self._path(key, k)).exists()]
            if not frames:
                raise FileNotFoundError(f"no materialized partition of {key.to_user_string()} among {keys}")
            return pd.concat(frames, ignore_index=True)
        return pd.read_parquet(self._path(key, None))


class VendorExchange(dg.ConfigurableResource, ABC):
    """Hands batches to a vendor and collects what the vendor returns."""

    vendor: str

    @abstractmethod
    def deliver(self, batch: VendorBatch) -> str:
        """Deliver a batch folder; return where it went. Delivering the same batch twice is a no-op."""

    @abstractmethod
    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        """(inbox folder, return files) for a batch, as local files ready to parse."""


class LocalFolderVendor(VendorExchange):
    """Vendor exchange through ``ROOT/vendors/<vendor>/outbox|inbox`` folders.

    With ``simulate_workforce`` the simulated workforce (sample_settings.json) labels each
    delivered batch at once; without it, a real vendor (or a person) fills the inbox.
    """

    root: str
    simulate_workforce: bool = True
    seed: int = 0

    def _dir(self, box: str) -> Path:
        layout = DataLayout(Path(self.root))
        return layout.outbox(self.vendor) if box == "outbox" else layout.inbox(self.vendor)

    def deliver(self, batch: VendorBatch) -> str:
        target = self._dir("outbox") / batch.batch_id
        if target.exists() and not verify_manifest(target) and \
                (target / "manifest.json").read_bytes() == (batch.folder / "manifest.json").read_bytes():
            shutil.rmtree(batch.folder)  # already delivered, intact: nothing to send again
        else:
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(batch.folder), target)
        if self.simulate_workforce:
            self._simulate(batch, target)
        return str(target)

    def _simulate(self, batch: VendorBatch, outbox_batch: Path) -> None:
        from annotation_pipeline.ontology import load_ontology
        from annotation_pipeline.sample_world.workforce import (
            AnnotatorProfile,
            seed_for_batch,
            simulate_answers,
            write_label_studio_exports,
        )

        settings = load_sample_settings()["vendor"]
        profiles = [AnnotatorProfile.from_dict(p) for p in settings["annotators"]]
        layout = DataLayout(Path(self.root))
        truth = pd.concat([pd.read_parquet(p) for p in sorted(layout.sample_truth.glob("*.parquet"))]
                          + [pd.read_parquet(layout.gold_labels)], ignore_index=True)
        truth = truth.merge(batch.tasks[["item_id", "image_file"]], on="item_id")  # the simulator's eyes
        ontology = load_ontology()
        answers = simulate_answers(batch.tasks, truth, profiles, int(batch.tasks["overlap"].iloc[0]),
                                   list(ontology.scene_classes), ontology.object_geometry,
                                   seed=seed_for_batch(batch.batch_id) + self.seed)
        write_label_studio_exports(answers, batch.tasks, profiles, self._dir("inbox") / batch.batch_id, self.vendor)

    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        inbox = self._dir("inbox")
        files = sorted(p for p in (inbox / batch_id).glob("*") if p.is_file() and not p.name.startswith("."))
        return inbox, files


class S3Vendor(VendorExchange):
    """Vendor exchange through S3 prefixes (``<prefix>/outbox/<batch>/``, ``<prefix>/inbox/<batch>/``).

    Images are shared with presigned GET URLs written into ``presigned_urls.json`` beside the
    tasks, so the vendor needs no AWS credentials of ours.
    """

    bucket: str
    prefix: str = "vendors"
    endpoint_url: str | None = None
    download_dir: str
    url_expiry_s: int = 7 * 24 * 3600

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def deliver(self, batch: VendorBatch) -> str:
        s3 = self._client()
        base = f"{self.prefix}/{self.vendor}/outbox/{batch.batch_id}"
        urls = {}
        for path in sorted(p for p in batch.folder.rglob("*") if p.is_file()):
            key = f"{base}/{path.relative_to(batch.folder)}"
            s3.upload_file(str(path), self.bucket, key)
            if path.parent.name == "images":
                urls[path.name] = s3.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_expiry_s)
        s3.put_object(Bucket=self.bucket, Key=f"{base}/presigned_urls.json", Body=json.dumps(urls).encode())
        shutil.rmtree(batch.folder)
        return f"s3://{self.bucket}/{base}"

    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        s3 = self._client()
        inbox = Path(self.download_dir).resolve() / self.vendor / "inbox"
        local = inbox / batch_id
        local.mkdir(parents=True, exist_ok=True)
        prefix = f"{self.prefix}/{self.vendor}/inbox/{batch_id}/"
        files = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                # keep the vendor's name as given: intake quarantines names escaping the inbox
                target = local / obj["Key"][len(prefix):].replace("/", "_")
                s3.download_file(self.bucket, obj["Key"], str(target))
                files.append(target)
        return inbox, sorted(files)


class ReleaseStore(dg.ConfigurableResource):
    """DVC-versioned releases under the data root; ``remote_url`` a folder or ``s3://...``."""

    root: str
    remote_url: str
    endpoint_url: str | None = None
    _store: DvcReleaseStore | None = PrivateAttr(default=None)

    def store(self) -> DvcReleaseStore:
        if self._store is None:
            self._store = DvcReleaseStore(Path(self.root), self.remote_url, self.endpoint_url)
        return self._store


def build_resources(profile: str | None = None, root: Path | None = None) -> dict:
    """The resources of a profile: one dictionary lookup, the only place profiles differ."""
    settings = load_settings(root=root, profile=profile)
    root = settings.data_root
    common = {
        "data_root": DataRoot(path=str(root)),
        "io_manager": PartitionedParquetIOManager(base_path=str(root)),
        "releases": ReleaseStore(root=str(root), remote_url=settings.dvc_remote(),
                                 endpoint_url=settings.s3_endpoint_url),
    }
    if settings.profile == "local":
        return {**common, "vendor": LocalFolderVendor(vendor="simvendor", root=str(root))}
    return {**common, "vendor": S3Vendor(vendor=settings.vendor, bucket=settings.require_bucket(),
                                         endpoint_url=settings.s3_endpoint_url,
                                         download_dir=str(DataLayout(root).vendors))}
