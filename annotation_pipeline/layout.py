"""Every path under the data root, and every versioned project file, named once.

The CLI, the resources and the stages ask a ``DataLayout`` for paths; nothing else joins
folder names onto the root. Tables store paths relative to the root (``relative``), so a
root can be moved or restored elsewhere.

```
ROOT/
  landing/<day>/                 uploads waiting for ingestion (files + ``<name>.json`` sidecars)
  raw/<day>/<item_id>.<ext>      content-addressed raw store (original bytes)
  anonymized/<day>/              what may cross to a vendor
  restricted/                    owner only (0700): re-identification maps, landing/<day>.parquet
                                 (original file names and sidecars)
  tables/<asset>/<day>.parquet   every asset's table (local profile)
  quarantine/<stage>/<day>.parquet
  gold/images/, gold/gold_labels.parquet
  models/                        the pre-label model (skops) and its card (JSON, sha256)
  handoff/<batch_id>/tasks.parquet   our private side of each batch
  vendors/<vendor>/outbox|inbox/<batch_id>/
  review/<day>/tasks.json, images/, returns/   review tasks of a day and the reviewers' decisions
  intake_ledger/<vendor>.parquet
  qa/data_docs/<day>/rows/, batch_health/    Great Expectations Data Docs, one site per run
  qa/gold_demand/<vendor>/<day>.json        gold tasks the next batch should carry
  releases/, releases/index.jsonl, dvc-remote/, audit/audit.jsonl (+ audit.head.json)
  monitoring/predictions/<day>/, reference/, campaigns/<id>/, quarantine/, images/<day>/
  sample_truth/                  the sample world's answers (demo and tests only)
  dagster_home/                  the demo's Dagster instance
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The repository's Dagster instance settings (run retries, run monitoring, telemetry off, ...): the
# demo's instance under ROOT/dagster_home is written from it, not from a second copy.
INSTANCE_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


@dataclass(frozen=True)
class ProjectFiles:
    """Files versioned with the code under ``data/`` (or ``$ANNOTATION_PIPELINE_DATA_DIR``)."""

    data_dir: Path

    @property
    def ontology(self) -> Path:
        return self.data_dir / "ontology" / "v1.json"

    @property
    def guidelines(self) -> Path:
        return self.data_dir / "guidelines" / "v1.md"

    @property
    def sample_settings(self) -> Path:
        return self.data_dir / "sample_settings.json"

    @property
    def anonymization_policy(self) -> Path:
        return self.data_dir / "anonymization_policy.json"


def project_files() -> ProjectFiles:
    from annotation_pipeline.settings import load_settings

    return ProjectFiles(load_settings().data_dir)



@dataclass(frozen=True)
class BatchFolder:
    """The folder a vendor receives (staged under ``handoff/``, delivered to the outbox)."""

    path: Path

    @property
    def images(self) -> Path:
        return self.path / "images"

    @property
    def tasks_file(self) -> Path:
        """The Label Studio import file: tasks with our pre-labels as predictions."""
        return self.path / "tasks.json"

    @property
    def guidelines(self) -> Path:
        return self.path / "guidelines.md"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    def relative(self, path: Path) -> str:
        """A path inside the batch as the vendor's tools see it (``images/t00001-….png``)."""
        return Path(path).relative_to(self.path).as_posix()


@dataclass(frozen=True)
class ReviewFolder:
    """A day's review tasks (a Label Studio import file and its images) and the decisions returned."""

    path: Path

    @property
    def tasks_file(self) -> Path:
        """Label Studio import tasks: the consensus candidate as a prediction, hidden gold mixed in."""
        return self.path / "tasks.json"

    @property
    def images(self) -> Path:
        return self.path / "images"

    @property
    def returns(self) -> Path:
        """Where reviewers (or the simulated reviewer) put their decision files."""
        return self.path / "returns"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.path).as_posix()


# The index page of a Data Docs folder: a day's list of validations, and GX's own page of a site.
DATA_DOCS_INDEX_PAGE = "index.html"


@dataclass(frozen=True)
class DataLayout:
    root: Path
    anchored: bool = True  # False only to show paths relative to a placeholder (descriptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve() if self.anchored else Path(self.root))

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    # ingestion and anonymization
    def landing(self, day: str) -> Path:
        return self.root / "landing" / day

    def raw(self, day: str) -> Path:
        return self.root / "raw" / day

    @property
    def anonymized_store(self) -> Path:
        return self.root / "anonymized"

    def anonymized(self, day: str) -> Path:
        return self.anonymized_store / day

    def anonymized_image(self, day: str, file_name: str) -> Path:
        """An anonymized image by the file name a release's image index keeps (``images.parquet``)."""
        return self.anonymized(day) / Path(file_name).name

    @property
    def restricted(self) -> Path:
        return self.root / "restricted"

    @property
    def reidentification(self) -> Path:
        return self.restricted / "reidentification"

    def landing_originals(self, day: str) -> Path:
        """Original names and sidecars of a day's landing entries (restricted, 0600)."""
        return self.restricted / "landing" / f"{day}.parquet"

    # tables and quarantine
    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, asset_path: list[str] | tuple[str, ...], partition: str | None) -> Path:
        return self.tables.joinpath(*asset_path) / f"{partition or 'all'}.parquet"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def quarantine_file(self, stage: str, day: str) -> Path:
        return self.quarantine / stage / f"{day}.parquet"

    # gold set and model
    @property
    def gold(self) -> Path:
        return self.root / "gold"

    @property
    def gold_images(self) -> Path:
        return self.gold / "images"

    def gold_image(self, item_id: str) -> Path:
        """Gold images are generated PNGs named by their content hash."""
        return self.gold_images / f"{item_id}.png"

    @property
    def gold_labels(self) -> Path:
        return self.gold / "gold_labels.parquet"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def prelabel_model(self) -> Path:
        """skops format: loading allows only listed scikit-learn types, never arbitrary code."""
        return self.models / "prelabel_model.skops"

    @property
    def prelabel_model_card(self) -> Path:
        """JSON beside the model: version, metrics and the sha256 of the model file."""
        return self.models / "prelabel_model.json"

    @property
    def gold_prelabels(self) -> Path:
        """The model's pre-labels of the gold images, each by a model that did not learn that image
        (PRELABELS): what hidden gold tasks show the vendor, so they look like any other task."""
        return self.models / "gold_prelabels.parquet"

    @property
    def auto_accept_evidence(self) -> Path:
        """The model's precision on held-out gold per kind, class and score band (contracts.AUTO_ACCEPT_EVIDENCE)."""
        return self.models / "auto_accept_evidence.parquet"

    # vendor exchange and QA
    @property
    def handoff(self) -> Path:
        return self.root / "handoff"

    @property
    def handoff_staging(self) -> Path:
        """Where a batch folder is assembled before the vendor resource delivers it."""
        return self.handoff / ".staging"

    def handoff_tasks(self, batch_id: str) -> Path:
        return self.handoff / batch_id / "tasks.parquet"

    def handoff_exchange(self, batch_id: str) -> Path:
        """Which vendor exchange a batch went through, and where (written with ``handoff_tasks``)."""
        return self.handoff / batch_id / "exchange.json"

    @property
    def vendors(self) -> Path:
        return self.root / "vendors"

    def outbox(self, vendor: str) -> Path:
        return self.vendors / vendor / "outbox"

    def inbox(self, vendor: str) -> Path:
        return self.vendors / vendor / "inbox"

    def outbox_batch(self, vendor: str, batch_id: str) -> Path:
        """A delivered batch folder (a BatchFolder) in the vendor's outbox."""
        return self.outbox(vendor) / batch_id

    def superseded_returns(self, vendor: str, batch_id: str) -> Path:
        """Where a batch's returns through an earlier exchange go when it is sent through another (out of intake's sight)."""
        return self.inbox(vendor) / ".superseded" / batch_id

    def label_studio_export(self, vendor: str, batch_id: str) -> Path:
        """A batch's Label Studio project export, collected into its inbox folder for intake."""
        return self.inbox_batch(vendor, batch_id) / "label-studio-export.json"

    def inbox_batch(self, vendor: str, batch_id: str) -> Path:
        """What the vendor returned for one batch."""
        return self.inbox(vendor) / batch_id
    @property
    def review(self) -> Path:
        return self.root / "review"

    def review_folder(self, day: str) -> ReviewFolder:
        """One day's review tasks and the decisions reviewers return for them."""
        return ReviewFolder(self.review / day)

    def intake_ledger(self, vendor: str) -> Path:
        return self.root / "intake_ledger" / f"{vendor}.parquet"

    @property
    def data_docs(self) -> Path:
        return self.root / "qa" / "data_docs"

    def gold_demand(self, vendor: str) -> Path:
        """Per vendor, one ``<day>.json`` per judged day: gold tasks the next batch should carry."""
        return self.root / "qa" / "gold_demand" / vendor

    def gold_demand_of_day(self, vendor: str, day: str) -> Path:
        return self.gold_demand(vendor) / f"{day}.json"

    def data_docs_for(self, day: str) -> Path:
        """One day's Data Docs: ``rows/<key>/`` and ``batch_health/<key>/``, one site per validation, written once
        and never replaced (older links keep opening), and ``index.html`` listing them all."""
        return self.data_docs / day

    def data_docs_index(self, day: str) -> Path:
        """The page listing every validation site of the day, newest first (``qa.data_docs`` writes it)."""
        return self.data_docs_for(day) / DATA_DOCS_INDEX_PAGE

    # releases and audit
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def release_pointer(self, version: str) -> Path:
        """The ``.dvc`` file that pins a release (what the git registry commits and tags)."""
        return self.releases / f"{version}.dvc"

    def registry_files(self, version: str) -> list[Path]:
        """What the git registry commits for a release: its pointer, the index, DVC's config and
        the ignore files (release/registry.py says why nothing else)."""
        return [self.release_pointer(version), self.release_index, self.releases / ".gitignore",
                self.dvc_dir / "config", self.dvc_dir / ".gitignore", self.root / ".dvcignore",
                self.registry_gitignore]

    @property
    def dvc_dir(self) -> Path:
        """The data root's DVC project folder (config, cache)."""
        return self.root / ".dvc"

    @property
    def registry_gitignore(self) -> Path:
        return self.root / ".gitignore"

    @property
    def release_index(self) -> Path:
        return self.releases / "index.jsonl"

    @property
    def release_lock(self) -> Path:
        """Held (flock) while a release is built and registered: one publisher at a time."""
        return self.releases / ".publish.lock"

    @property
    def local_dvc_remote(self) -> Path:
        return self.root / "dvc-remote"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit" / "audit.jsonl"

    @property
    def audit_head(self) -> Path:
        """The chain's head (line count, sha256 of the last line): shows a truncated log."""
        return self.root / "audit" / "audit.head.json"

    # monitoring
    @property
    def monitoring(self) -> Path:
        return self.root / "monitoring"

    def predictions(self, day: str) -> Path:
        return self.monitoring / "predictions" / day

    def prediction_log(self, day: str, source: str) -> Path:
        """One serving process's prediction log of a day (the serving team names ``source``)."""
        return self.predictions(day) / f"{source}.parquet"

    @property
    def reference(self) -> Path:
        return self.monitoring / "reference"

    def reference_log(self, model_version: str, suffix: str = ".parquet") -> Path:
        """A model version's validation-set predictions (``.parquet`` or ``.csv``)."""
        return self.reference / f"{model_version}{suffix}"

    @property
    def campaigns(self) -> Path:
        return self.monitoring / "campaigns"

    def campaign(self, campaign_id: str) -> Path:
        return self.campaigns / campaign_id

    def campaign_items(self, campaign_id: str) -> Path:
        return self.campaign(campaign_id) / "items.parquet"

    def campaign_manifest(self, campaign_id: str) -> Path:
        return self.campaign(campaign_id) / "campaign.json"

    def monitoring_quarantine(self, day: str) -> Path:
        return self.monitoring / "quarantine" / f"{day}.parquet"

    def monitoring_images(self, day: str) -> Path:
        return self.monitoring / "images" / day

    # the sample world and the demo
    @property
    def sample_truth(self) -> Path:
        return self.root / "sample_truth"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"
