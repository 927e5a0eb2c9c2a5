"""``annotation-pipeline verify``, ``releases`` and ``trace`` against a tampered data root.

Each test copies a root holding two releases (v0001: one day, v0002: two days), tampers with
it the way an attacker or an accident would, and runs the command: exit 1 and a one-line
reason naming the problem, never "intact".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.audit import GENESIS, line_sha256
from annotation_pipeline.cli.main import main
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.release.days import release_day, store_for

WORKTREE = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published") / "root"
    store = store_for(root)
    release_day(store, "2026-11-20")
    release_day(store, "2026-11-21")
    return root


@pytest.fixture
def root(published, tmp_path) -> Path:
    copy = tmp_path / "root"
    shutil.copytree(published, copy, symlinks=True)
    return copy


def _strict_json(text: str) -> dict:
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def _run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def _writable(path: Path) -> Path:
    path.parent.chmod(0o755)
    path.chmod(0o644)
    return path


def _rewrite_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _forge_label(root: Path, version: str = "v0002") -> None:
    """Change one released label and rewrite its sha256 in the manifest, as the issue's attacker did."""
    folder = DataLayout(root).releases / version
    labels_path = _writable(folder / "labels.parquet")
    labels = pd.read_parquet(labels_path)
    labels.loc[0, "label"] = "forged"
    labels.to_parquet(labels_path, index=False)
    manifest_path = _writable(folder / "manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["labels.parquet"] = hashlib.sha256(labels_path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2))


def test_an_intact_root_verifies_with_a_summary_and_strict_json(root, capsys):
    code, out, err = _run(capsys, "verify", "--root", str(root), "--json")
    result = _strict_json(out)
    assert code == 0 and err == []
    assert result["intact"] and result["problems"] == [] and result["releases"] == 2 and result["audit_lines"] == 2
    code, out, err = _run(capsys, "verify", "--root", str(root))
    assert code == 0 and "intact: 2 release(s), 2 audit line(s)" in out
    assert _run(capsys, "releases", "--root", str(root))[0] == 0


def test_an_edited_audit_line_is_named(root, capsys):
    _rewrite_lines(DataLayout(root).audit_log, lambda lines: [lines[0].replace('"n_labels": 3', '"n_labels": 30'),
                                                                *lines[1:]])
    code, _, err = _run(capsys, "verify", "--root", str(root))
    assert code == 1
    assert "error: audit log line 2: prev_sha256 does not match line 1 (line 1 was edited)" in err
    code, _, err = _run(capsys, "releases", "--root", str(root))
    assert code == 1 and any("line 1 was edited" in e for e in err)


def test_a_deleted_audit_line_is_named(root, capsys):
    _rewrite_lines(DataLayout(root).audit_log, lambda lines: lines[1:])
    code, _, err = _run(capsys, "verify", "--root", str(root))
    assert code == 1
    assert "error: audit log line 1: seq 2 where 1 was expected (lines were deleted, inserted or reordered " \
           "before it)" in err
    assert any("release v0001: no release_published event" in e for e in err)


def test_a_truncated_audit_log_is_named(root, capsys):
    _rewrite_lines(DataLayout(root).audit_log, lambda lines: lines[:1])
    code, _, err = _run(capsys, "verify", "--root", str(root))
    assert code == 1
    assert "error: audit log: 1 lines but 2 were written (lines deleted: truncated after line 1)" in err


def test_an_edited_release_index_is_named(root, capsys):
    _rewrite_lines(DataLayout(root).release_index,
                   lambda lines: [lines[0].replace('"n_labels": 3', '"n_labels": 4'), *lines[1:]])
    code, _, err = _run(capsys, "verify", "--root", str(root))
    assert code == 1
    assert any(e.startswith("error: release index line 1 (v0001): differs from the line the audit log recorded")
               for e in err)
    assert _run(capsys, "releases", "--root", str(root))[0] == 1


def test_a_changed_label_with_its_manifest_hash_rewritten_fails_verify_trace_and_releases(root, capsys):
    _forge_label(root)
    code, out, err = _run(capsys, "verify", "--root", str(root), "--json")
    assert code == 1 and not _strict_json(out)["intact"]
    assert any("release v0002: manifest.json sha256" in e and "(the manifest was rewritten)" in e for e in err)
    assert any("releases/v0002.dvc: the files on disk differ from what DVC recorded" in e for e in err)
    item = pd.read_parquet(DataLayout(root).releases / "v0002" / "labels.parquet")["item_id"].iloc[0]
    code, out, err = _run(capsys, "trace", item, "--root", str(root))
    assert code == 1 and "RELEASE FILES CHANGED" in out
    assert any("release v0002: manifest.json sha256" in e for e in err)
    code, _, err = _run(capsys, "releases", "--root", str(root))
    assert code == 1 and any("the manifest was rewritten" in e for e in err)
    # the untouched release still traces cleanly
    first = pd.read_parquet(DataLayout(root).releases / "v0001" / "labels.parquet")["item_id"].iloc[0]
    assert _run(capsys, "trace", first, "--root", str(root), "--release", "v0001")[0] == 0


def test_a_forger_who_also_rewrites_the_index_and_rebuilds_the_audit_chain_is_caught_by_dvc(root, capsys):
    _forge_label(root)
    layout = DataLayout(root)
    manifest_sha = hashlib.sha256((layout.releases / "v0002" / "manifest.json").read_bytes()).hexdigest()
    index = layout.release_index.read_text().splitlines()
    record = json.loads(index[1])
    record["manifest_sha256"] = manifest_sha
    index[1] = json.dumps(record)
    layout.release_index.write_text("\n".join(index) + "\n")
    events = [json.loads(line) for line in layout.audit_log.read_text().splitlines()]
    events[1].update(manifest_sha256=manifest_sha,
                     index_line_sha256=hashlib.sha256(index[1].encode()).hexdigest())
    lines, prev = [], GENESIS
    for event in events:  # rebuild the whole chain and its head
        event["prev_sha256"] = prev
        lines.append(json.dumps(event))
        prev = line_sha256(lines[-1])
    layout.audit_log.write_text("\n".join(lines) + "\n")
    layout.audit_head.write_text(json.dumps({"lines": len(lines), "sha256": prev}))
    assert _run(capsys, "releases", "--root", str(root))[0] == 0  # offline anchors all agree now...
    code, _, err = _run(capsys, "verify", "--root", str(root))
    assert code == 1  # ...but DVC's content hashes do not
    assert err[0].startswith("error: releases/v0002.dvc: the files on disk differ from what DVC recorded")


def test_verify_exits_1_without_a_traceback_as_a_command(root):
    _rewrite_lines(DataLayout(root).audit_log, lambda lines: lines[1:])
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DAGSTER_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "verify", "--root", str(root), "--json"],
                          cwd=WORKTREE, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert not _strict_json(proc.stdout)["intact"]
    assert proc.stderr.splitlines()[0] == ("error: audit log line 1: seq 2 where 1 was expected (lines were "
                                           "deleted, inserted or reordered before it)")


def test_verify_of_a_missing_root_says_so(tmp_path, capsys):
    code, _, err = _run(capsys, "verify", "--root", str(tmp_path / "nowhere"))
    assert code == 1 and err == [f"error: no data root at {tmp_path / 'nowhere'}: pass --root DIR or set "
                                 "$ANNOTATION_PIPELINE_ROOT"]
