"""Dataset releases: immutable, DVC-versioned snapshots with a quality report and provenance.

A release is a folder ``releases/<version>/`` under the data root holding ``labels.parquet``
(the cumulative dataset), ``provenance.parquet`` (every vendor answer behind every label, with
its source file hash and the raw item it came from), ``quality_report.json`` and ``.md``, and
``manifest.json`` (sha256 of every file, parent version, content fingerprint). It is written
to a staging folder, renamed into place in one step, ``dvc add``-ed and pushed to the DVC
remote; only then is it appended to ``releases/index.jsonl``, the registry of releases, and to
the hash-chained audit log. A crash at any point leaves either no release or a finished one;
the next publish removes the leftovers and reconciles the audit log (release/recovery.py).

Publishing holds an exclusive lock and checks the parent release first (release/integrity.py:
files against the manifest, the manifest against the index line and the audit event, DVC's
status): a tampered parent is never built upon.

The version sequence is ``v0001, v0002, ...``; the identity of a release is the fingerprint of
its labels: publishing content equal to the latest release returns that release.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from annotation_pipeline.audit import append_audit_event, verify_audit_chain
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.release.integrity import (
    RELEASE_EVENT,
    IntegrityReport,
    check_index_order,
    check_offline,
    check_release_anchors,
    check_release_files,
    dvc_file_md5,
    file_sha256,
    leftover_folders,
    read_index_lines,
    release_events,
)
from annotation_pipeline.release.recovery import cut_torn_index_line, publish_lock, reconcile_audit, remove_leftover
from annotation_pipeline.release.registry import ensure_registry, record_release, recorded_versions
from annotation_pipeline.settings import Settings, silence_phone_home

silence_phone_home()  # no internet here: DVC must not phone home
log = logging.getLogger(__name__)


# (report, dataset, image index) -> {file name: content}: more files for a release folder.
Attachments = Callable[[dict, pd.DataFrame, pd.DataFrame], dict[str, bytes]]


class ReleaseIntegrityError(RuntimeError):
    """The release history is not what was published: nothing may be built on it."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message + ("\n  " + "\n  ".join(problems) if problems else ""))
        self.problems = problems


class StaleParentError(RuntimeError):
    """A caller built a dataset on a parent that is no longer the latest release."""


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
    manifest_sha256: str = ""   # empty on index lines written before manifests were anchored
    created: bool = True   # False when publishing found identical content already released

    @classmethod
    def from_record(cls, record: dict) -> ReleaseInfo | None:
        """An index record as a ReleaseInfo; None when it lacks a field (``verify`` names it)."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in record.items() if k in known})
        except TypeError:
            return None


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


_LATEST = object()  # publish(parent=...) default: build on whatever is latest


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
    def layout(self) -> DataLayout:
        return DataLayout(self.root)

    @property
    def releases_dir(self) -> Path:
        return self.layout.releases

    def _repo(self):
        from dvc.repo import Repo  # heavy import, only where releases are made

        # DVC logs progress at INFO to stdout; our callers own stdout (e.g. `--json`).
        logging.getLogger("dvc").setLevel(logging.WARNING)

        if not self.layout.dvc_dir.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.redirect_stdout(io.StringIO()):  # DVC prints a banner; stdout is the caller's
                ensure_registry(self.root)  # the data root is a git-tagged DVC registry
                Repo.init(str(self.root))
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
        lines, _ = read_index_lines(self.layout.release_index)
        return [info for line in lines if (info := ReleaseInfo.from_record(line.record)) is not None]

    def latest(self) -> ReleaseInfo | None:
        releases = self.list_releases()
        return releases[-1] if releases else None

    def read_table(self, version: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.releases_dir / version / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"release {version} has no {name}.parquet (looked in {path})")
        return pd.read_parquet(path, columns=columns)

    # -- publishing: one publisher at a time, on a verified parent ------------------------------

    def publish(self, labels: pd.DataFrame, provenance: pd.DataFrame, quality_report: dict,
                partitions: list[str], versions: dict[str, str], parent=_LATEST) -> ReleaseInfo:
        """Publish ``labels`` (a whole dataset) unless the latest release holds the same content.

        ``parent`` is the compare-and-swap: the version the caller built ``labels`` on (None for
        the first release). If another publisher released in between, StaleParentError is raised
        instead of silently dropping that release's labels; ``release_partition`` never sees it,
        because it reads the latest release under the lock.
        """
        with publish_lock(self.layout.release_lock):
            latest = self._recover_and_verify_latest()
            if parent is not _LATEST and parent != (latest.version if latest else None):
                raise StaleParentError(f"the dataset was built on {parent or 'no release'}, but the latest "
                                       f"release is now {latest.version if latest else 'none'}: rebuild on it")
            return self._publish_on(latest, labels, provenance, quality_report, partitions, versions)

    def release_partition(self, partition_date: str, day_labels: pd.DataFrame, day_provenance: pd.DataFrame,
                          report_for: Callable[[pd.DataFrame, pd.DataFrame | None], dict], versions: dict[str, str],
                          day_images: pd.DataFrame | None = None, attachments: Attachments | None = None
                          ) -> ReleaseInfo | None:
        """The latest release with ``partition_date``'s rows replaced by this day's, published.

        Latest is read under the publish lock, after its integrity is checked, so two days
        released at once both end in the dataset: the second merges onto the first's release.
        None when the dataset would be empty (nothing labeled yet, no earlier release).
        ``report_for(dataset, parent_labels)`` makes the quality report; ``day_images`` (item_id,
        file_name, width, height) joins the release's image index, and ``attachments(report,
        dataset, images)`` returns more files for the release folder (exports, HTML report).
        """
        with publish_lock(self.layout.release_lock):
            latest = self._recover_and_verify_latest()
            previous = self.read_table(latest.version, "labels") if latest else None
            previous_provenance = self.read_table(latest.version, "provenance") if latest else None
            labels = merge_into_dataset(previous, day_labels, partition_date)
            if labels.empty:
                return None
            provenance = merge_into_dataset(previous_provenance, day_provenance, partition_date)
            images = None
            if day_images is not None:
                earlier = self.read_table(latest.version, "images") if latest and self._has_table(latest, "images") \
                    else None
                images = merge_into_dataset(earlier, day_images, partition_date)
            return self._publish_on(latest, labels, provenance, report_for(labels, previous),
                                    sorted(labels["partition_date"].unique()), versions, images=images,
                                    attachments=attachments)

    def _has_table(self, release: ReleaseInfo, name: str) -> bool:
        return (self.releases_dir / release.version / f"{name}.parquet").is_file()

    def _recover_and_verify_latest(self) -> ReleaseInfo | None:
        """Under the lock: refuse a tampered history, finish what a crash left, check the parent."""
        cut_torn_index_line(self.root, self.layout.release_index)
        lines, index_problems = read_index_lines(self.layout.release_index)
        problems = index_problems + verify_audit_chain(self.root) + check_index_order(lines)
        events = release_events(self.root)
        indexed = {line.record["version"] for line in lines}
        problems += [f"audit log line {e['line']}: records release {v}, which the index does not list"
                     for v, e in sorted(events.items()) if v not in indexed]
        if problems:
            raise ReleaseIntegrityError("the release history is not what was published; nothing was "
                                        "released. Run `annotation-pipeline verify` and restore the named "
                                        "files before releasing again:", problems)
        for version in reconcile_audit(self.root, lines, events):
            log.warning("release %s had no audit event (a crash after its index line): appended, reconciled",
                        version)
        if (self.root / ".git").exists():  # a crash after the index line, before the tag: tag it now
            for version in sorted(indexed - set(recorded_versions(self.root))):
                record_release(self.root, version)
        for path in leftover_folders(self.releases_dir, indexed):
            remove_leftover(path)
        if not lines:
            return None
        parent = lines[-1]
        problems = check_release_files(self.releases_dir, parent)
        problems += check_release_anchors(parent, release_events(self.root).get(parent.record["version"]))
        problems = problems or self.dvc_problems([parent.record["version"]], cloud=False)
        if problems:
            raise ReleaseIntegrityError(
                f"the parent release {parent.record['version']} is not what was published, so no release was "
                f"built on it. Restore it (`dvc checkout releases/{parent.record['version']}.dvc` in the data "
                "root restores its files from the DVC cache) and check with `annotation-pipeline verify`:",
                problems)
        info = ReleaseInfo.from_record(parent.record)
        if info is None:
            raise ReleaseIntegrityError(f"release index line {parent.number} lacks fields of a release record; "
                                        "nothing was released", [])
        return info

    def _publish_on(self, latest: ReleaseInfo | None, labels: pd.DataFrame, provenance: pd.DataFrame,
                    quality_report: dict, partitions: list[str], versions: dict[str, str],
                    images: pd.DataFrame | None = None, attachments: Attachments | None = None) -> ReleaseInfo:
        fingerprint = labels_fingerprint(labels)
        if latest is not None and latest.fingerprint == fingerprint:
            return ReleaseInfo(**{**asdict(latest), "created": False})
        parent = latest.version if latest else None
        version = f"v{int(parent[1:]) + 1 if parent else 1:04d}"
        final = self.releases_dir / version
        staging = self.releases_dir / f".staging-{version}"
        staging.mkdir(parents=True)
        labels.to_parquet(staging / "labels.parquet", index=False)
        provenance.to_parquet(staging / "provenance.parquet", index=False)
        report = {"version": version, "fingerprint": fingerprint, "parent": parent, **quality_report}
        (staging / "quality_report.json").write_text(json.dumps(report, indent=2, default=str))
        (staging / "quality_report.md").write_text(render_quality_report(report))
        if images is not None:
            images.to_parquet(staging / "images.parquet", index=False)
            for name, content in (attachments(report, labels, images) if attachments else {}).items():
                (staging / name).write_bytes(content)
        created_at = datetime.now(timezone.utc).isoformat()
        manifest = {
            "version": version, "fingerprint": fingerprint, "created_at": created_at,
            "parent": parent, "partitions": partitions, "versions": versions,
            "files": {p.name: file_sha256(p) for p in sorted(staging.iterdir())},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        staging.rename(final)  # atomic on one filesystem: the release appears whole or not at all

        repo = self._repo()
        with contextlib.redirect_stdout(io.StringIO()):
            repo.add([str(final)])
            repo.push()
        dvc_md5 = dvc_file_md5(self.releases_dir / f"{version}.dvc")
        for path in [*final.rglob("*"), final]:  # releases are immutable on disk too
            path.chmod(0o555 if path.is_dir() else 0o444)
        info = ReleaseInfo(version, fingerprint, created_at, parent, len(labels),
                           int(labels["item_id"].nunique()), partitions, dvc_md5, self.remote_url,
                           file_sha256(final / "manifest.json"))
        line = json.dumps(asdict(info)).encode("utf-8")
        with self.layout.release_index.open("ab") as fh:
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        append_audit_event(self.root, RELEASE_EVENT, version=version, fingerprint=fingerprint, parent=parent,
                           n_labels=info.n_labels, dvc_md5=dvc_md5, manifest_sha256=info.manifest_sha256,
                           index_line_sha256=hashlib.sha256(line).hexdigest(), partitions=partitions)
        if (self.root / ".git").exists():  # a registry root: the release becomes a tagged commit
            record_release(self.root, version)
        return info

    # -- checking --------------------------------------------------------------------------------

    def verify(self, version: str) -> list[str]:
        """Problems with one release (files, manifest anchors, the audit chain); empty when intact."""
        lines, problems = read_index_lines(self.layout.release_index)
        mine = [line for line in lines if line.record["version"] == version]
        if not mine:
            return problems + [f"release {version}: not in {self.layout.release_index}"]
        problems += verify_audit_chain(self.root) + check_release_files(self.releases_dir, mine[-1])
        return problems + check_release_anchors(mine[-1], release_events(self.root).get(version))

    def check(self, with_dvc: bool = True) -> IntegrityReport:
        """The whole history: audit chain, index, every release; with DVC workspace and remote status."""
        report = check_offline(self.root, self.releases_dir, self.layout.release_index)
        if with_dvc and self.layout.dvc_dir.exists():
            report.problems += self.dvc_problems([r.version for r in self.list_releases()], cloud=True)
        return report

    def dvc_problems(self, versions: list[str], cloud: bool) -> list[str]:
        """``dvc status`` of the releases' ``.dvc`` files: the workspace, and the remote when ``cloud``."""
        targets = [str(p) for v in versions if (p := self.releases_dir / f"{v}.dvc").is_file()]
        if not targets:
            return []
        problems = []
        try:
            repo = self._repo()
            with contextlib.redirect_stdout(io.StringIO()):
                local = repo.status(targets=targets)
                remote = repo.status(targets=targets, cloud=True, remote="releases") if cloud else {}
        except Exception as exc:  # noqa: BLE001 - DVC raises many types; verify must name it, not crash
            return [f"dvc status failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]
        for dvc_file, changes in sorted(local.items()):
            dvc_file = self._relative(dvc_file)  # DVC names it relative to the working directory
            what = "; ".join(f"{out} {state}" for change in changes if isinstance(change, dict)
                             for outs in change.values() if isinstance(outs, dict) for out, state in outs.items())
            problems.append(f"{dvc_file}: the files on disk differ from what DVC recorded ({what or changes})")
        for name, state in sorted(remote.items()):
            problems.append(f"DVC remote {self.remote_url}: {name} is {state} (not pushed, or removed from the remote)")
        return problems

    def _relative(self, path: str) -> str:
        absolute = (Path.cwd() / path).resolve()
        return str(absolute.relative_to(self.root)) if absolute.is_relative_to(self.root) else path


def merge_into_dataset(previous: pd.DataFrame | None, new_labels: pd.DataFrame, partition_date: str) -> pd.DataFrame:
    """The next dataset: the previous release with this partition's labels replaced.

    Replacing (not appending) the partition's rows is what makes a rerun of a partition
    idempotent: the same consensus gives the same dataset and so no new release.
    """
    new = new_labels.assign(partition_date=partition_date)
    if previous is None or previous.empty:
        return new.reset_index(drop=True)
    kept = previous[previous["partition_date"] != partition_date]
    merged = pd.concat([kept, new], ignore_index=True)
    if "label_source" in merged:  # days released before reviews came back were all consensus
        merged["label_source"] = merged["label_source"].fillna("consensus")
    return merged


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
