"""Is a release what was published? Cross-checks that no single rewritten file can satisfy.

A release's manifest lists the sha256 of every file, but a forger who changes a label can
rewrite the manifest too. So the manifest is anchored three times over, each in a file
written at a different moment and guarded differently:

- the index line (``releases/index.jsonl``) records the manifest's sha256 and the DVC md5 of
  the release folder;
- the ``release_published`` audit event records the same two, plus the sha256 of the exact
  index line; the audit log is hash-chained, so rewriting that event breaks the chain;
- ``releases/vNNNN.dvc`` records the DVC md5, and the DVC cache and remote hold the content
  under it: ``dvc status`` recomputes the folder's hashes (``with_dvc``, used by ``verify``
  and the release step's parent check; ``trace`` and ``releases`` stay offline and fast).

A forger must now rewrite the files, the manifest, the index line, the audit chain from that
event on (and its head), the ``.dvc`` file and the remote; the Dagster event log outside the
root also keeps the manifest sha256 of every release materialization.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from annotation_pipeline.audit import read_audit_events, verify_audit_chain

RELEASE_EVENT = "release_published"
_VERSION_DIR = re.compile(r"^v\d{4,}$")


@dataclass
class IndexLine:
    number: int          # 1-based line of releases/index.jsonl
    sha256: str          # of the line's bytes, as the audit event records it
    record: dict


@dataclass
class IntegrityReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # not tampering: e.g. crash leftovers the next run removes
    releases: int = 0
    audit_lines: int = 0

    @property
    def intact(self) -> bool:
        return not self.problems


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_index_lines(index: Path) -> tuple[list[IndexLine], list[str]]:
    """The index's lines and a problem for each line that is not a release record."""
    if not index.exists():
        return [], []
    lines, problems = [], []
    for number, raw in enumerate(index.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or not isinstance(record.get("version"), str):
                raise ValueError
        except ValueError:
            problems.append(f"{index} line {number}: not a release record (expected a JSON object with a version)")
            continue
        lines.append(IndexLine(number, hashlib.sha256(raw).hexdigest(), record))
    return lines, problems


def release_events(root: Path) -> dict[str, dict]:
    """The last ``release_published`` event of each version."""
    return {e["version"]: e for e in read_audit_events(root)
            if e.get("event") == RELEASE_EVENT and isinstance(e.get("version"), str)}


def dvc_file_md5(dvc_file: Path) -> str:
    """The folder md5 a ``.dvc`` file pins (``outs[0].md5``, with DVC's ``.dir`` suffix)."""
    for line in dvc_file.read_text().splitlines():
        line = line.strip().lstrip("- ")
        if line.startswith("md5:"):
            return line.split(":", 1)[1].strip()
    return ""


def check_release_files(releases_dir: Path, line: IndexLine) -> list[str]:
    """The release folder against its manifest, and the manifest against its index line."""
    info = line.record
    version = info["version"]
    folder = releases_dir / version
    manifest_path = folder / "manifest.json"
    if not folder.is_dir():
        return [f"release {version}: folder {folder} is missing"]
    if not manifest_path.is_file():
        return [f"release {version}: {manifest_path} is missing"]
    problems = []
    manifest_sha = file_sha256(manifest_path)
    # An index line without the key was written before manifests were anchored (its audit event
    # then records the index line's sha256 neither); removing the key from a newer line changes
    # the line, which its audit event's index_line_sha256 shows.
    if "manifest_sha256" in info and manifest_sha != info["manifest_sha256"]:
        problems.append(f"release {version}: manifest.json sha256 {manifest_sha[:12]} differs from the index's "
                        f"{str(info['manifest_sha256'])[:12]} (the manifest was rewritten)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        return problems + [f"release {version}: manifest.json is not a valid manifest (expected JSON with files)"]
    for name, digest in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"release {version}: {name} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"release {version}: {name} changed since release (sha256 differs from the manifest)")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in files and p.name != "manifest.json")
    problems += [f"release {version}: {name} is not in its manifest (added after release)" for name in extra]
    for key in ("fingerprint", "parent"):
        if manifest.get(key) != info.get(key):
            problems.append(f"release {version}: the index says {key} {info.get(key)!r}, the manifest "
                            f"{manifest.get(key)!r}")
    dvc_file = releases_dir / f"{version}.dvc"
    if not dvc_file.is_file():
        problems.append(f"release {version}: {dvc_file.name} is missing")
    elif dvc_file_md5(dvc_file) != info.get("dvc_md5"):
        problems.append(f"release {version}: {dvc_file.name} pins md5 {dvc_file_md5(dvc_file)}, the index "
                        f"{info.get('dvc_md5')}")
    return problems


def check_release_anchors(line: IndexLine, event: dict | None) -> list[str]:
    """The index line against the audit event written when the release was published."""
    version = line.record["version"]
    if event is None:
        return [f"release {version}: no {RELEASE_EVENT} event in the audit log (a crash before its audit "
                "line, which the next release run reconciles, or the event was removed)"]
    problems = []
    if event.get("index_line_sha256") and event["index_line_sha256"] != line.sha256:
        problems.append(f"release index line {line.number} ({version}): differs from the line the audit log "
                        f"recorded at line {event['line']} (the index was edited)")
    for key in ("manifest_sha256", "dvc_md5", "fingerprint", "parent"):
        if key in event and event[key] != line.record.get(key):
            problems.append(f"release {version}: the index says {key} {line.record.get(key)!r}, audit log line "
                            f"{event['line']} {event[key]!r}")
    return problems


def check_index_order(lines: list[IndexLine]) -> list[str]:
    problems, previous = [], None
    for position, line in enumerate(lines, start=1):
        version, expected = line.record["version"], f"v{position:04d}"
        if version != expected:
            problems.append(f"release index line {line.number}: {version} where {expected} was expected "
                            "(lines deleted, inserted or reordered)")
        elif line.record.get("parent") != previous:
            problems.append(f"release index line {line.number} ({version}): parent "
                            f"{line.record.get('parent')!r} where {previous!r} was expected")
        previous = version
    return problems


def leftover_folders(releases_dir: Path, indexed: set[str]) -> list[Path]:
    """Release folders, ``.dvc`` files and staging folders that no index line names."""
    if not releases_dir.is_dir():
        return []
    out = []
    for path in sorted(releases_dir.iterdir()):
        name = path.name.removesuffix(".dvc") if path.suffix == ".dvc" else path.name
        if name.startswith(".staging-") or (_VERSION_DIR.match(name) and name not in indexed):
            out.append(path)
    return out


def check_offline(root: Path, releases_dir: Path, index: Path) -> IntegrityReport:
    """Everything but DVC: the audit chain, the index, every release's files and anchors."""
    report = IntegrityReport()
    report.problems += verify_audit_chain(root)
    lines, index_problems = read_index_lines(index)
    report.problems += index_problems
    report.releases = len(lines)
    report.problems += check_index_order(lines)
    events = release_events(root)
    report.audit_lines = max((e["line"] for e in read_audit_events(root)), default=0)
    for line in lines:
        report.problems += check_release_files(releases_dir, line)
        report.problems += check_release_anchors(line, events.get(line.record["version"]))
    indexed = {line.record["version"] for line in lines}
    for version, event in sorted(events.items()):
        if version not in indexed:
            report.problems.append(f"audit log line {event['line']}: records release {version}, which the index "
                                   "does not list (an index line was deleted)")
    report.notes += [f"release {line.record['version']}: published before manifests were anchored in the index "
                     "and the audit log; its files are checked against its manifest only"
                     for line in lines if "manifest_sha256" not in line.record]
    for path in leftover_folders(releases_dir, indexed):
        report.notes.append(f"{path}: left by a crashed release; the next release run removes it")
    return report
