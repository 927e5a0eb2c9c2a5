"""Releases under concurrency, crashes and tampering: nothing lost, nothing built on a forgery."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.audit import line_sha256, read_audit_events
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.release.store import ReleaseIntegrityError, StaleParentError
from annotation_pipeline_tests.release.days import release_day, store_for

WORKTREE = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _released_days(root: Path) -> list[str]:
    store = store_for(root)
    return sorted(store.read_table(store.latest().version, "labels")["partition_date"].unique())


def test_two_days_released_at_once_from_two_processes_both_end_in_the_latest_release(tmp_path):
    root = tmp_path / "root"
    script = ("import sys; from pathlib import Path; from annotation_pipeline_tests.release.days import "
              "release_day, store_for; print(release_day(store_for(Path(sys.argv[1])), sys.argv[2]).version)")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", script, str(root), day], cwd=WORKTREE, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for day in ("2026-11-20", "2026-11-21")]
    outcomes = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outcomes]
    assert sorted(out.strip() for out, _ in outcomes) == ["v0001", "v0002"]
    store = store_for(root)
    assert [(r.version, r.parent) for r in store.list_releases()] == [("v0001", None), ("v0002", "v0001")]
    assert _released_days(root) == ["2026-11-20", "2026-11-21"]  # neither day was dropped
    assert store.latest().n_labels == 6
    assert store.check(with_dvc=False).intact


def test_two_days_released_at_once_from_two_threads_both_end_in_the_latest_release(tmp_path):
    root = tmp_path / "root"
    release_day(store_for(root), "2026-11-19")  # an existing history, as in a backfill
    start, errors = threading.Barrier(2), []

    def release(day):
        start.wait()
        try:
            release_day(store_for(root), day)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=release, args=(day,)) for day in ("2026-11-20", "2026-11-21")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert [r.version for r in store_for(root).list_releases()] == ["v0001", "v0002", "v0003"]
    assert _released_days(root) == ["2026-11-19", "2026-11-20", "2026-11-21"]


def test_publishing_a_dataset_built_on_a_stale_parent_is_refused(tmp_path):
    store = store_for(tmp_path / "root")
    first = release_day(store, "2026-11-20")
    release_day(store, "2026-11-21")
    labels = store.read_table(first.version, "labels")
    with pytest.raises(StaleParentError, match="built on v0001, but the latest release is now v0002"):
        store.publish(labels.assign(label="bike"), store.read_table(first.version, "provenance"), {}, ["2026-11-20"],
                      {}, parent="v0001")
    assert len(store.list_releases()) == 2


def test_a_tampered_parent_stops_the_release_with_a_clear_message(tmp_path):
    store = store_for(tmp_path / "root")
    release_day(store, "2026-11-20")
    folder = store.releases_dir / "v0001"
    folder.chmod(0o755)
    labels_path = folder / "labels.parquet"
    labels_path.chmod(0o644)
    pd.read_parquet(labels_path).assign(label="forged").to_parquet(labels_path, index=False)
    manifest_path = folder / "manifest.json"
    manifest_path.chmod(0o644)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["labels.parquet"] = __import__("hashlib").sha256(labels_path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ReleaseIntegrityError) as caught:
        release_day(store, "2026-11-21")
    message = str(caught.value)
    assert message.startswith("the parent release v0001 is not what was published, so no release was built on it")
    assert "dvc checkout releases/v0001.dvc" in message
    assert any("manifest.json sha256" in p for p in caught.value.problems)
    assert [r.version for r in store.list_releases()] == ["v0001"]
    assert not (store.releases_dir / "v0002").exists()


def test_a_release_left_unaudited_by_a_crash_is_reconciled_on_the_next_run(tmp_path):
    store = store_for(tmp_path / "root")
    release_day(store, "2026-11-20")
    release_day(store, "2026-11-21")
    layout = DataLayout(store.root)
    # the crash: v0002's index line was written, its audit line never was
    first = layout.audit_log.read_text().splitlines()[0]
    layout.audit_log.write_text(first + "\n")
    layout.audit_head.write_text(json.dumps({"lines": 1, "sha256": line_sha256(first)}))
    assert store.check(with_dvc=False).problems == [
        "release v0002: no release_published event in the audit log (a crash before its audit line, which the "
        "next release run reconciles, or the event was removed)"]
    release_day(store, "2026-11-22")
    events = [e for e in read_audit_events(store.root) if e["event"] == "release_published"]
    assert [(e["version"], e.get("reconciled", False)) for e in events] == [
        ("v0001", False), ("v0002", True), ("v0003", False)]
    assert store.check(with_dvc=True).intact


def _crash_leftovers(releases: Path) -> list[Path]:
    """What a publish killed after making v0002 read-only (before its index line) leaves, and a staging folder."""
    final, staging = releases / "v0002", releases / ".staging-v0003"
    for folder in (final, staging):
        (folder / "sub").mkdir(parents=True)
        (folder / "labels.parquet").write_bytes(b"a release nobody registered")
        (folder / "sub" / "part").write_bytes(b"x")
    (releases / "v0002.dvc").write_text("outs:\n- md5: 0123.dir\n  path: v0002\n")
    for path in sorted(final.rglob("*"), reverse=True) + [final]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return [final, staging, releases / "v0002.dvc"]


def test_crash_leftovers_read_only_and_owned_by_another_user_are_removed_by_the_next_release(tmp_path):
    # Root ignores file modes, so the publish after the crash runs in a child process as an
    # unprivileged user (uid 65534) owning the root: without restoring write permission first,
    # removing the read-only folder fails with PermissionError, as the issue found.
    base = Path(tempfile.mkdtemp(prefix="release_trust-crash-"))
    try:
        base.chmod(0o755)
        root = base / "root"
        store = store_for(root)
        release_day(store, "2026-11-20")  # as root: also imports everything the child needs
        leftovers = _crash_leftovers(store.releases_dir)
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)
        os.chown(base, NOBODY, NOBODY)
        result = base / "child.json"
        pid = os.fork()
        if pid == 0:  # the child: drop privileges, publish the next day, report, exit
            code = 1
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                os.environ.update(HOME=str(base), XDG_CONFIG_HOME=str(base / ".config"),
                                  DVC_SITE_CACHE_DIR=str(base / ".dvc-site"), DVC_GLOBAL_CONFIG_DIR=str(base / ".g"))
                info = release_day(store_for(root), "2026-11-21")
                result.write_text(json.dumps({"version": info.version, "uid": os.getuid()}))
                code = 0
            except BaseException as exc:  # noqa: BLE001 - the parent asserts on what we write
                result.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        outcome = json.loads(result.read_text())
        assert os.waitstatus_to_exitcode(status) == 0, outcome
        assert outcome == {"version": "v0002", "uid": NOBODY}
        assert not any(p.name.startswith(".staging") for p in store.releases_dir.iterdir())
        assert leftovers[0].exists() and (leftovers[0] / "manifest.json").exists()  # the real v0002, rebuilt
        assert not (leftovers[0] / "sub").exists()
        assert _released_days(root) == ["2026-11-20", "2026-11-21"]
        assert store.check(with_dvc=False).intact
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_index_line_torn_by_a_crash_is_cut_off_and_the_release_rebuilt(tmp_path):
    store = store_for(tmp_path / "root")
    release_day(store, "2026-11-20")
    layout = DataLayout(store.root)
    line = layout.release_index.read_bytes().splitlines()[0].replace(b'"v0001"', b'"v0002"')
    with layout.release_index.open("ab") as fh:
        fh.write(line[: len(line) // 2])  # the crash: half of v0002's line, no newline
    assert any("not a release record" in p for p in store.check(with_dvc=False).problems)
    info = release_day(store, "2026-11-21")
    assert info.version == "v0002" and info.parent == "v0001"
    assert [e["event"] for e in read_audit_events(store.root)] == [
        "release_published", "release_index_repaired", "release_published"]
    assert store.check(with_dvc=True).intact


def test_a_root_released_before_anchoring_still_verifies_and_releases_on(tmp_path):
    store = store_for(tmp_path / "root")
    release_day(store, "2026-11-20")
    layout = DataLayout(store.root)
    # what the previous version wrote: no manifest_sha256 in the index, an unchained audit line, no head
    record = json.loads(layout.release_index.read_text())
    del record["manifest_sha256"]
    layout.release_index.write_text(json.dumps(record) + "\n")
    event = json.loads(layout.audit_log.read_text())
    legacy = {k: v for k, v in event.items() if k not in ("seq", "prev_sha256", "manifest_sha256", "index_line_sha256")}
    layout.audit_log.write_text(json.dumps(legacy) + "\n")
    layout.audit_head.unlink()
    report = store.check(with_dvc=True)
    assert report.intact and report.notes == [
        "release v0001: published before manifests were anchored in the index and the audit log; its files are "
        "checked against its manifest only"]
    assert release_day(store, "2026-11-21").version == "v0002"
    assert store.check(with_dvc=True).intact
    assert [e.get("seq") for e in read_audit_events(store.root)] == [None, 2]  # the chain starts after the legacy line
