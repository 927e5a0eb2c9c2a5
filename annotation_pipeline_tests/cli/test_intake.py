"""``annotation-pipeline intake``: the intake + row QA path on the command line."""

from __future__ import annotations

import json

import pytest

from annotation_pipeline.cli.main import main
from annotation_pipeline_tests.malformed.corpus import BATCH, VENDOR, dumps, make_tasks, valid_export, write_corpus


@pytest.fixture
def root(tmp_path):
    handoff = tmp_path / "handoff" / BATCH
    handoff.mkdir(parents=True)
    make_tasks().to_parquet(handoff / "tasks.parquet")
    return tmp_path


def test_intake_reports_every_file_and_quarantined_row_as_json(root, capsys):
    files, cases = write_corpus(root / "vendors" / VENDOR / "inbox")
    code = main(["intake", *map(str, files), "--root", str(root), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["vendor"] == VENDOR and out["missing_handoff_tasks"] == []
    assert out["received"] == out["accepted"] + out["quarantined"]
    assert out["duplicate_files"] == 1
    reasons = {q["reason"] for q in out["quarantine"]}
    assert {"truncated_json", "not_utf8", "path_outside_inbox", "unknown_task", "invalid_polygon",
            "duplicate_answer", "missing_scene_choice"} <= reasons
    assert {e["reason"] for e in out["expectations"] if not e["success"]} >= {"zero_area", "outside_image"}


def test_intake_prints_a_readable_report(root, capsys):
    inbox = root / "vendors" / VENDOR / "inbox" / BATCH
    inbox.mkdir(parents=True)
    good = inbox / "ann-01.json"
    good.write_bytes(dumps(valid_export("ann-01")))
    cut = inbox / "cut.json"
    cut.write_bytes(dumps(valid_export("ann-02"))[:100])
    assert main(["intake", str(good), str(cut), "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "received 19, accepted 18, quarantined 1" in text
    assert "truncated_json" in text and "cut.json" in text


def test_without_handoff_tasks_rows_are_reported_as_unknown_tasks(tmp_path, capsys):
    inbox = tmp_path / "vendors" / VENDOR / "inbox" / "b-x"
    inbox.mkdir(parents=True)
    path = inbox / "ann-01.json"
    path.write_bytes(dumps(valid_export("ann-01", task_ids=(1,))))
    assert main(["intake", str(path), "--root", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["missing_handoff_tasks"] == [str(tmp_path / "handoff" / "b-x" / "tasks.parquet")]
    assert {q["reason"] for q in out["quarantine"]} == {"unknown_task"} and out["accepted"] == 0


def test_intake_exits_1_with_one_line_per_missing_file(tmp_path, capsys):
    code = main(["intake", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--root", str(tmp_path),
                 "--vendor", VENDOR])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"error: {tmp_path / 'a.json'}: file not found", f"error: {tmp_path / 'b.json'}: file not found"]


def test_intake_asks_for_the_vendor_when_the_path_does_not_tell(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_bytes(dumps(valid_export("ann-01", task_ids=(1,))))
    assert main(["intake", str(path), "--root", str(tmp_path)]) == 1
    assert "--vendor" in capsys.readouterr().err


def test_a_hostile_batch_folder_gets_a_report_and_never_a_traceback(root):
    """The real command in a fresh process: every hostile file and entry judged, JSON strict."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from annotation_pipeline_tests.malformed.corpus import field_mutations, file_mutations

    folder = root / "vendors" / VENDOR / "inbox" / BATCH
    folder.mkdir(parents=True)
    (folder / "ann-01.json").write_bytes(dumps(valid_export("ann-01")))
    for m in field_mutations()[::37]:
        (folder / m.name).write_bytes(m.content)
    for case in file_mutations():
        (folder / case.name).write_bytes(case.content)
    os.mkfifo(folder / "fifo.json")
    os.symlink("/etc/passwd", folder / "passwd.json")
    (folder / os.fsdecode(b"\xff\xfe-name.json")).write_bytes(dumps(valid_export("ann-02")))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "intake", str(folder),
                           "--root", str(root), "--json"], check=False, capture_output=True, timeout=600, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in done.stderr
    out = json.loads(done.stdout, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert out["received"] == out["accepted"] + out["quarantined"]
    assert out["files_received"] == out["files_accepted"] + out["files_quarantined"] + out["files_duplicate"]
    assert out["files_received"] == len(list(folder.iterdir()))  # every entry, the FIFO and the link too
    assert "not_a_regular_file" in {f["reason"] for f in out["files"]} or any(
        "FIFO" in str(f["detail"]) for f in out["files"])
    shown = {f["source_file"]: f for f in out["files"]}
    assert shown[f"{BATCH}/passwd.json"]["reason"] == "path_outside_inbox"
    assert shown[f"{BATCH}/\\xff\\xfe-name.json"]["n_accepted"] == 18


def test_the_inbox_given_as_a_folder_stands_for_every_batch_and_every_loose_entry(root, capsys):
    inbox = root / "vendors" / VENDOR / "inbox"
    (inbox / BATCH).mkdir(parents=True)
    (inbox / BATCH / "ann-01.json").write_bytes(dumps(valid_export("ann-01")))
    (inbox / "loose.json").write_bytes(dumps(valid_export("ann-02")))
    assert main(["intake", str(inbox), "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {(f["source_file"], f["reason"]) for f in out["files"]} == {
        (f"{BATCH}/ann-01.json", ""), ("loose.json", "no_batch_folder")}
    assert out["accepted"] == 18 and out["files_quarantined"] == 1
