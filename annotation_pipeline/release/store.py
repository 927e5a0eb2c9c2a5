"""Dataset releases: immutable, DVC-versioned snapshots with a quality report and provenance.

A release is a folder ``releases/<version>/`` under the data root holding ``labels.parquet``
(the cumulative dataset), ``provenance.parquet`` (every vendor answer behind every label, with
its source file hash and the raw item it came from), ``quality_report.json`` and ``.md``, and
``manifest.json`` (sha256 of every file, parent version, content fingerprint). It is written
to a staging folder, renamed into place in one step, ``dvc add``-ed and pushed to the DVC
remote; only then is it appended to ``releases/index.jsonl``, the registry of releases. A crash
at any point leaves either no release or a finished one; a rerun finishes or reuses it.

The version sequence is ``v0001, v0002, ...``; the identity of a release is the fingerprint of
its labels: publishing content equal to the latest release returns that release.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from annotation_pipeline.audit import append_audit_event
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.settings import Settings, silence_phone_home

silence_phone_home()  # no internet here: DVC must not phone home



@dataclass(frozen=True)
class ReleaseInfo:
    version: str
    fingerprint: str
    created_at: str
    parent: str | None
    n_labels: int
    n_items: int
    partitions: list[str]
    dvc_md5: str
    remote: str
    created: bool = True   # False when publishing found identical content already released


def labels_fingerprint(labels: pd.DataFrame) -> str:
    """Content hash of a labels table, independent of row order and of float noise.

    Floats are rounded to 6 decimals: EM posteriors summed in another order differ in the
    16th digit, and that must not make a new release.
    """
    table = labels.drop(columns=["geometry_wkb"], errors="ignore").copy()
    for col in table.columns:
        if pd.api.types.is_float_dtype(table[col]):
            table[col] = table[col].round(6)
    text = table.astype(str).fillna("")
    if "geometry_wkb" in labels:
        text["geometry_wkb"] = [w.hex() if isinstance(w, bytes) else "" for w in labels["geometry_wkb"]]
    text = text.sort_values(list(text.columns), kind="stable").reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(text, index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


class DvcReleaseStore:
    """Releases under ``root/releases`` in a DVC project rooted at ``root``.

    ``remote_url`` is a folder on the embedded default and ``s3://bucket/prefix`` in production
    (dvc-s3; ``endpoint_url`` for S3-compatible stores).
    """

    def __init__(self, root: Path, remote_url: str, endpoint_url: str | None = None):
        self.root = Path(root).resolve()
        self.remote_url = remote_url
        self.endpoint_url = endpoint_url

    @classmethod
    def from_settings(cls, settings: Settings) -> DvcReleaseStore:
        """The profile's store: the same remote for the release step, ``trace`` and ``verify``."""
        return cls(settings.data_root, settings.dvc_remote(), settings.s3_endpoint_url)

    @property
    def releases_dir(self) -> Path:
        return DataLayout(self.root).releases

    def _repo(self):
        from dvc.repo import Repo  # heavy import, only where releases are made

        # DVC logs progress at INFO to stdout; our callers own stdout (e.g. `--json`).
        logging.getLogger("dvc").setLevel(logging.WARNING)

        if not (self.root / ".dvc").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.redirect_stdout(io.StringIO()):  # DVC prints a banner; stdout is the caller's
                Repo.init(str(self.root), no_scm=not (self.root / ".git").exists())  # a registry root is under git
        repo = Repo(str(self.root))
        with repo.config.edit() as conf:
            conf["core"]["analytics"] = False
            conf["core"]["remote"] = "releases"
            remote = {"url": self.remote_url}
            if self.endpoint_url:
                remote["endpointurl"] = self.endpoint_url
            conf["remote"]["releases"] = remote
        return repo

    def list_releases(self) -> list[ReleaseInfo]:
        index = DataLayout(self.root).release_index
        if not index.exists():
            return []
        return [ReleaseInfo(**json.loads(line)) for line in index.read_text().splitlines() if line.strip()]

    def latest(self) -> ReleaseInfo | None:
        releases = self.list_releases()
        return releases[-1] if releases else None

    def read_table(self, version: str, name: str) -> pd.DataFrame:
        path = self.releases_dir / version / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"release {version} has no {name}.parquet (looked in {path})")
        return pd.read_parquet(path)

    def publish(self, labels: pd.DataFrame, provenance: pd.DataFrame, quality_report: dict,
                partitions: list[str], versions: dict[str, str]) -> ReleaseInfo:
        """Publish ``labels`` as a new release unless the latest release holds the same content."""
        fingerprint = labels_fingerprint(labels)
        releases = self.list_releases()
        latest = releases[-1] if releases else None
        if latest is not None and latest.fingerprint == fingerprint:
            return ReleaseInfo(**{**asdict(latest), "created": False})
        version = f"v{len(releases) + 1:04d}"
        final = self.releases_dir / version
        if final.exists():  # a crash after the rename and before the index: redo from scratch
            shutil.rmtree(final)
            (self.releases_dir / f"{version}.dvc").unlink(missing_ok=True)
        staging = self.releases_dir / f".staging-{version}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        labels.to_parquet(staging / "labels.parquet", index=False)
        provenance.to_parquet(staging / "provenance.parquet", index=False)
        report = {"version": version, "fingerprint": fingerprint, "parent": latest.version if latest else None,
                  **quality_report}
        (staging / "quality_report.json").write_text(json.dumps(report, indent=2, default=str))
        (staging / "quality_report.md").write_text(render_quality_report(report))
        created_at = datetime.now(timezone.utc).isoformat()
        manifest = {
            "version": version, "fingerprint": fingerprint, "created_at": created_at,
            "parent": latest.version if latest else None, "partitions": partitions, "versions": versions,
            "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(staging.iterdir())},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        staging.rename(final)  # atomic on one filesystem: the release appears whole or not at all

        repo = self._repo()
        with contextlib.redirect_stdout(io.StringIO()):
            repo.add([str(final)])
            repo.push()
        dvc_md5 = _dvc_md5(self.releases_dir / f"{version}.dvc")
        for path in [final, *final.rglob("*")]:  # releases are immutable on disk too
            path.chmod(0o555 if path.is_dir() else 0o444)
        info = ReleaseInfo(version, fingerprint, created_at, latest.version if latest else None,
                           len(labels), int(labels["item_id"].nunique()), partitions, dvc_md5, self.remote_url)
        with DataLayout(self.root).release_index.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(info)) + "\n")
        append_audit_event(self.root, "release_published", version=version, fingerprint=fingerprint,
                           parent=info.parent, n_labels=info.n_labels, dvc_md5=dvc_md5, partitions=partitions)
        return info

    def verify(self, version: str) -> list[str]:
        """Problems with a release on disk (files changed since publishing); empty when intact."""
        manifest = json.loads((self.releases_dir / version / "manifest.json").read_text())
        problems = []
        for name, digest in manifest["files"].items():
            path = self.releases_dir / version / name
            if not path.exists():
                problems.append(f"{version}/{name}: missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                problems.append(f"{version}/{name}: changed since release")
        return problems


def _dvc_md5(dvc_file: Path) -> str:
    for line in dvc_file.read_text().splitlines():
        line = line.strip().lstrip("- ")
        if line.startswith("md5:"):
            return line.split(":", 1)[1].strip()
    return ""


def merge_into_dataset(previous: pd.DataFrame | None, new_labels: pd.DataFrame, partition_date: str) -> pd.DataFrame:
    """The next dataset: the previous release with this partition's labels replaced.

    Replacing (not appending) the partition's rows is what makes a rerun of a partition
    idempotent: the same consensus gives the same dataset and so no new release.
    """
    new = new_labels.assign(partition_date=partition_date)
    if previous is None or previous.empty:
        return new.reset_index(drop=True)
    kept = previous[previous["partition_date"] != partition_date]
    return pd.concat([kept, new], ignore_index=True)


def render_quality_report(report: dict) -> str:
    lines = [f"# Dataset release {report['version']}", "",
             f"- fingerprint: `{report['fingerprint']}`", f"- parent: {report.get('parent') or '(first release)'}", ""]
    for section, values in report.items():
        if isinstance(values, dict):
            lines += [f"## {section.replace('_', ' ').capitalize()}", "", "| what | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in values.items()]
            lines.append("")
        elif isinstance(values, list) and values and isinstance(values[0], dict):
            cols = list(values[0])
            lines += [f"## {section.replace('_', ' ').capitalize()}", "",
                      "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in values]
            lines.append("")
    return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
