"""Resources: the seams between assets and the world, one local and one production flavour each.

``ANNOTATION_PIPELINE_PROFILE`` picks the flavour (``local`` when unset, or ``production``);
assets never branch on the environment, they only call these small interfaces.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import QUARANTINE
from annotation_pipeline.defs.prelabel_service import build_prelabel_service
from annotation_pipeline.defs.review_desk import LocalReviewFolder
from annotation_pipeline.layout import BatchFolder, DataLayout
from annotation_pipeline.release.store import DvcReleaseStore
from annotation_pipeline.sample_world.sample_data import load_sample_settings
from annotation_pipeline.settings import load_settings
from annotation_pipeline.vendor.handoff import VendorBatch, verify_manifest

# Keys of tables relative to a store's base: the relative paths DataLayout names under a root.
_KEYS = DataLayout(Path("."), anchored=False)


def table_key(asset_path: list[str] | tuple[str, ...], partition: str | None) -> str:
    """``tables/<asset>/<partition>.parquet`` (``all.parquet`` for an unpartitioned asset)."""
    return _KEYS.table(asset_path, partition).as_posix()


def quarantine_key(stage: str, day: str) -> str:
    return _KEYS.quarantine_file(stage, day).as_posix()


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


class TableStore(dg.ConfigurableResource, ABC):
    """Parquet tables under relative keys: what crosses steps, on a folder or in a bucket.

    A write replaces the whole object at once (readers see the old table or the new one);
    tables are only ever read as Parquet, never unpickled.
    """

    @abstractmethod
    def write_table(self, key: str, df: pd.DataFrame) -> str:
        """Store ``df`` under ``key`` atomically; return where it went."""

    @abstractmethod
    def read_table(self, key: str) -> pd.DataFrame | None:
        """The table under ``key``, or None if there is none."""

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in ``/``), sorted."""


class LocalTableStore(TableStore):
    """Tables under a folder (the data root): ``<base_path>/<key>``, swapped in with a rename."""

    base_path: str

    def _path(self, key: str) -> Path:
        return Path(self.base_path).resolve() / key

    def write_table(self, key: str, df: pd.DataFrame) -> str:
        return str(write_parquet_atomic(df, self._path(key)))

    def read_table(self, key: str) -> pd.DataFrame | None:
        path = self._path(key)
        return pd.read_parquet(path) if path.exists() else None

    def list_keys(self, prefix: str) -> list[str]:
        base = Path(self.base_path).resolve()
        folder = base / prefix
        if not folder.is_dir():
            return []
        # hidden names are write_atomic's temporary files
        return sorted(p.relative_to(base).as_posix() for p in folder.rglob("*.parquet")
                      if p.is_file() and not p.name.startswith("."))


class S3TableStore(TableStore):
    """Tables as objects ``s3://<bucket>/<prefix>/<key>`` through dagster-aws's S3 resource.

    Each table is serialized in memory and sent with one PutObject: S3 makes a single PUT
    visible whole or not at all, whereas a temporary key copied over is two requests a crash
    can split. (dagster-aws's own S3 IO manager pickles; tables must never be able to run code.)
    """

    s3: S3Resource
    bucket: str
    prefix: str = "pipeline"
    _client: object | None = PrivateAttr(default=None)

    def _s3(self):
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def write_table(self, key: str, df: pd.DataFrame) -> str:
        self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=_parquet_bytes(df))
        return f"s3://{self.bucket}/{self._key(key)}"

    def read_table(self, key: str) -> pd.DataFrame | None:
        client = self._s3()
        try:
            body = client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return pd.read_parquet(io.BytesIO(body))

    def list_keys(self, prefix: str) -> list[str]:
        start = len(self._key(""))
        keys = []
        for page in self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys += [obj["Key"][start:] for obj in page.get("Contents", [])]
        return sorted(keys)


class DataRoot(dg.ConfigurableResource):
    """The working data root: landing folders, raw and anonymized stores, tables, releases.

    The quarantine crosses steps (every stage writes, intake and release read), so with
    ``tables_bucket`` (the production profile) it is kept in that bucket beside the tables;
    without one it stays under the root. Plain config, no nested resource: sensors and tests
    call this resource directly.
    """

    path: str
    tables_bucket: str | None = None
    tables_prefix: str = "pipeline"
    s3_endpoint_url: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.path).resolve()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root)

    def _table_store(self) -> TableStore:
        if self.tables_bucket:
            return S3TableStore(s3=S3Resource(endpoint_url=self.s3_endpoint_url), bucket=self.tables_bucket,
                                prefix=self.tables_prefix)
        return LocalTableStore(base_path=str(self.root))

    def write_quarantine(self, stage: str, partition_date: str, rows: pd.DataFrame) -> str:
        """Quarantine rows of one stage and partition; replaced, not appended, on a rerun."""
        return self._table_store().write_table(quarantine_key(stage, partition_date), QUARANTINE.conform(rows))

    def read_quarantine(self, partition_date: str) -> pd.DataFrame:
        store = self._table_store()
        day_file = Path(quarantine_key("any", partition_date)).name
        prefix = _KEYS.quarantine.as_posix() + "/"
        # keys are quarantine/<stage>/<day>.parquet: one per stage that quarantined something that day
        keys = [k for k in store.list_keys(prefix) if k.count("/") == 2 and k.endswith("/" + day_file)]
        frames = [df for k in keys if (df := store.read_table(k)) is not None]
        return QUARANTINE.conform(pd.concat(frames, ignore_index=True)) if frames else QUARANTINE.empty()

    def read_table(self, asset: str, partition: str | None) -> pd.DataFrame | None:
        """An asset's table as the IO manager wrote it, None when never written: for tables an
        asset reads without depending on them (its own earlier days, a table another stage may add)."""
        return self._table_store().read_table(table_key([asset], partition))

    def restricted_dir(self) -> Path:
        """Where re-identification maps live: never under vendors/, readable by the owner only."""
        path = self.layout.restricted
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        return path


class ParquetTableIOManager(dg.ConfigurableIOManager, ABC):
    """Every asset's DataFrame as Parquet at ``tables/<asset>/<partition>.parquet`` of a table store.

    The one interface of both profiles; they differ only in the store. An unpartitioned asset
    reading a partitioned one gets all its partitions concatenated.
    """

    @abstractmethod
    def table_store(self) -> TableStore:
        """Where this IO manager keeps tables."""

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        partition = context.partition_key if context.has_partition_key else None
        location = self.table_store().write_table(table_key(context.asset_key.path, partition), obj)
        context.add_output_metadata({"table_location": location})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key, store = context.asset_key, self.table_store()
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            frames = [df for k in keys if (df := store.read_table(table_key(key.path, k))) is not None]
            if not frames:
                raise FileNotFoundError(f"no materialized partition of {key.to_user_string()} among {keys}")
            return pd.concat(frames, ignore_index=True)
        df = store.read_table(table_key(key.path, None))
        if df is None:
            raise FileNotFoundError(f"{key.to_user_string()} has not been materialized ({table_key(key.path, None)})")
        return df


class PartitionedParquetIOManager(ParquetTableIOManager):
    """The local flavour: tables under ``<base_path>/tables/`` (the data root)."""

    base_path: str

    def table_store(self) -> TableStore:
        return LocalTableStore(base_path=self.base_path)


class S3ParquetIOManager(ParquetTableIOManager):
    """The production flavour: tables under ``s3://<bucket>/<prefix>/tables/``."""

    s3: S3Resource
    bucket: str
    prefix: str = "pipeline"
    _store: S3TableStore | None = PrivateAttr(default=None)

    def table_store(self) -> TableStore:
        if self._store is None:  # one boto3 client per step process, not per table
            self._store = S3TableStore(s3=self.s3, bucket=self.bucket, prefix=self.prefix)
        return self._store


def simulated_answers(root: Path, batch: VendorBatch, seed: int = 0) -> tuple[pd.DataFrame, list]:
    """The simulated workforce's (sample_settings.json) answers to a delivered batch, and its profiles."""
    from annotation_pipeline.ontology import load_ontology
    from annotation_pipeline.sample_world.workforce import AnnotatorProfile, seed_for_batch, simulate_answers

    settings = load_sample_settings()["vendor"]
    profiles = [AnnotatorProfile.from_dict(p) for p in settings["annotators"]]
    layout = DataLayout(root)
    truth = pd.concat([pd.read_parquet(p) for p in sorted(layout.sample_truth.glob("*.parquet"))]
                      + [pd.read_parquet(layout.gold_labels)], ignore_index=True)
    truth = truth.merge(batch.tasks[["item_id", "image_file"]], on="item_id")  # the simulator's eyes
    ontology = load_ontology()
    answers = simulate_answers(batch.tasks, truth, profiles, int(batch.tasks["overlap"].iloc[0]),
                               list(ontology.scene_classes), ontology.object_geometry,
                               seed=seed_for_batch(batch.batch_id) + seed)
    return answers, profiles


def simulate_vendor_returns(root: Path, batch: VendorBatch, inbox_batch: Path, vendor: str, seed: int = 0) -> None:
    """The simulated workforce answers a delivered batch into ``inbox_batch``, one export per annotator."""
    from annotation_pipeline.sample_world.workforce import write_label_studio_exports

    answers, profiles = simulated_answers(root, batch, seed)
    write_label_studio_exports(answers, batch.tasks, profiles, inbox_batch, vendor)


def move_to_outbox(batch: VendorBatch, target: Path) -> Path:
    """Move a staged batch folder to ``target``; an intact copy of the same batch already there stays."""
    if target.exists() and not verify_manifest(target) and \
            BatchFolder(target).manifest.read_bytes() == BatchFolder(batch.folder).manifest.read_bytes():
        shutil.rmtree(batch.folder)  # already delivered, intact: nothing to send again
    else:
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(batch.folder), target)
    return target


class VendorExchange(dg.ConfigurableResource, ABC):
    """Hands batches to a vendor and collects what the vendor returns."""

    vendor: str

    @abstractmethod
    def deliver(self, batch: VendorBatch) -> str:
        """Deliver a batch folder; return where it went. Delivering the same batch twice is a no-op."""

    @abstractmethod
    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        """(inbox folder, return files) for a batch, as local files ready to parse."""

    def exchange(self) -> str:
        """This exchange's name and place, as recorded beside each batch sent through it."""
        return type(self).__name__

    def holds(self, batch_id: str) -> bool:
        """Whether a batch recorded as sent through this exchange is still there (default: trust the record)."""
        return True


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
        target = move_to_outbox(batch, DataLayout(Path(self.root)).outbox_batch(self.vendor, batch.batch_id))
        if self.simulate_workforce:
            simulate_vendor_returns(Path(self.root), batch, self._dir("inbox") / batch.batch_id, self.vendor, self.seed)
        return str(target)

    def exchange(self) -> str:
        return f"folder at {self._dir('outbox')}"

    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        inbox = self._dir("inbox")
        files = sorted(p for p in (inbox / batch_id).glob("*") if p.is_file() and not p.name.startswith("."))
        return inbox, files


class S3Vendor(VendorExchange):
    """Vendor exchange through S3 prefixes (``<prefix>/outbox/<batch>/``, ``<prefix>/inbox/<batch>/``).

    Images are shared with presigned GET URLs written into ``presigned_urls.json`` beside the
    tasks, so the vendor needs no AWS credentials of ours. With ``simulate_workforce`` (a
    staging stack, the production_e2e tests) the simulated workforce answers each delivered
    batch into its inbox prefix, as a vendor would; ``root`` is then the data root holding the
    sample world's answers.
    """

    bucket: str
    prefix: str = "vendors"
    endpoint_url: str | None = None
    download_root: str  # a data root: returns are downloaded to its DataLayout.inbox(vendor)
    url_expiry_s: int = 7 * 24 * 3600
    simulate_workforce: bool = False
    root: str | None = None

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def upload(self, batch: VendorBatch) -> tuple[str, dict[str, str]]:
        """Upload the batch folder; (its location, a presigned GET URL per image file name)."""
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
        return f"s3://{self.bucket}/{base}", urls

    def deliver(self, batch: VendorBatch) -> str:
        location, _ = self.upload(batch)
        if self.simulate_workforce:
            self._simulate(self._client(), batch)
        shutil.rmtree(batch.folder)
        return location

    def _simulate(self, s3, batch: VendorBatch) -> None:
        if not self.root:
            raise ValueError("S3Vendor(simulate_workforce=True) needs root: the data root of the sample world")
        with tempfile.TemporaryDirectory(prefix="simulated-vendor-") as scratch:
            simulate_vendor_returns(Path(self.root), batch, Path(scratch), self.vendor)
            for path in sorted(Path(scratch).glob("*")):
                s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{self.vendor}/inbox/{batch.batch_id}/{path.name}",
                              Body=path.read_bytes())

    def collect_returns(self, batch_id: str) -> tuple[Path, list[Path]]:
        s3 = self._client()
        inbox = DataLayout(Path(self.download_root)).inbox(self.vendor)
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
    releases = ReleaseStore(root=str(root), remote_url=settings.dvc_remote(), endpoint_url=settings.s3_endpoint_url)
    if settings.profile == "local":
        vendor = LocalFolderVendor(vendor="simvendor", root=str(root))
        if settings.vendor_exchange == "label_studio":
            vendor = _label_studio_vendor(settings, "simvendor", simulate=True)
        return {"data_root": DataRoot(path=str(root)), "io_manager": PartitionedParquetIOManager(base_path=str(root)),
                "releases": releases, "vendor": vendor, "prelabeler": build_prelabel_service(settings),
                "review_desk": LocalReviewFolder(root=str(root))}
    bucket = settings.require_bucket()
    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url)
    vendor = S3Vendor(vendor=settings.vendor, bucket=bucket, endpoint_url=settings.s3_endpoint_url,
                      download_root=str(root), simulate_workforce=settings.simulate_vendor, root=str(root))
    if settings.vendor_exchange == "label_studio":
        vendor = _label_studio_vendor(settings, settings.vendor, simulate=settings.simulate_vendor, bucket=bucket)
    return {
        "data_root": DataRoot(path=str(root), tables_bucket=bucket, tables_prefix=settings.s3_prefix,
                              s3_endpoint_url=settings.s3_endpoint_url),
        "io_manager": S3ParquetIOManager(s3=s3, bucket=bucket, prefix=settings.s3_prefix),
        "releases": releases,
        "vendor": vendor,
        "prelabeler": build_prelabel_service(settings),
        "review_desk": LocalReviewFolder(root=str(root), simulate_reviewer=settings.simulate_vendor),
    }


def _label_studio_vendor(settings, vendor: str, simulate: bool, bucket: str | None = None) -> VendorExchange:
    """Batches through a Label Studio server; images as local files, or presigned URLs from ``bucket``."""
    from annotation_pipeline.defs.label_studio_vendor import LabelStudioVendor  # it builds on this module

    return LabelStudioVendor(vendor=vendor, url=settings.label_studio_url, root=str(settings.data_root),
                             simulate_workforce=simulate, s3_bucket=bucket, endpoint_url=settings.s3_endpoint_url)


K8S_EXECUTOR_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "k8s_executor.yaml"


def build_executor(profile: str | None = None) -> dg.ExecutorDefinition:
    """How a profile's jobs run. Local: in one process, since a process per step costs more than
    the day's work on 2 cores (benchmarks/RESULTS.md). Production: each step a Celery task on
    the workers, or a Kubernetes Job (``ANNOTATION_PIPELINE_EXECUTOR=k8s``, Helm deployments)."""
    settings = load_settings(profile=profile)
    if settings.profile == "local":
        return dg.in_process_executor
    if settings.production_executor == "k8s":
        import yaml
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(yaml.safe_load(K8S_EXECUTOR_CONFIG.read_text()), name="k8s")
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": settings.celery_broker_config(), "backend": settings.celery_backend},
                                      name="celery")

