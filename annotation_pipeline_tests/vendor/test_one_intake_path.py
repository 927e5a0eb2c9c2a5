"""One intake path: ``annotation-pipeline intake`` and the ``returned_annotations`` asset judge alike.

Both run vendor.returns.process_vendor_returns. The asset's side is driven here as the asset
drives it: files from the vendor exchange resource (``collect_returns``, which lists only
regular files), the intake ledger's other days as already ingested, the whole batch folder
judged. The CLI is given the batch folder. Accepted rows, quarantined rows with their reasons
and the files report must be the same.
"""

from __future__ import annotations

import json
import os

import pandas as pd

from annotation_pipeline.cli.main import main
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.returns import IntakeLedger, process_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    BATCH,
    VENDOR,
    dumps,
    field_mutations,
    gold_labels,
    make_tasks,
    valid_export,
    write_corpus,
)

DAY = "2026-11-02"


def _root(tmp_path):
    layout = DataLayout(tmp_path / "root")
    layout.handoff_tasks(BATCH).parent.mkdir(parents=True)
    make_tasks().to_parquet(layout.handoff_tasks(BATCH))
    layout.gold_labels.parent.mkdir(parents=True)
    gold_labels().to_parquet(layout.gold_labels)
    inbox = layout.inbox(VENDOR)
    write_corpus(inbox)  # valid files, malformed cases, a byte-identical copy
    folder = inbox / BATCH
    for m in field_mutations()[::40]:  # a spread of hostile values at hostile places
        (folder / m.name).write_bytes(m.content)
    os.symlink(folder / "ann-01.json", folder / "link.json")
    os.mkfifo(folder / "fifo.json")
    (folder / "sub").mkdir()
    (folder / os.fsdecode(b"ann-\xff.json")).write_bytes(dumps(valid_export("ann-05", task_ids=(1, 2))))
    # a file the pipeline ingested on an earlier day: both must call it a duplicate
    earlier = dumps(valid_export("ann-06", task_ids=(3,)))
    (folder / "ann-06-again.json").write_bytes(earlier)
    import hashlib

    IntakeLedger(layout.intake_ledger(VENDOR)).record("2026-11-01", {hashlib.sha256(earlier).hexdigest()})
    return layout


def _asset_side(layout: DataLayout):
    from annotation_pipeline.defs.resources import LocalFolderVendor

    vendor = LocalFolderVendor(vendor=VENDOR, root=str(layout.root), simulate_workforce=False)
    tasks = pd.read_parquet(layout.handoff_tasks(BATCH))
    ledger = IntakeLedger(layout.intake_ledger(VENDOR))
    return process_vendor_returns({BATCH: vendor.collect_returns(BATCH)}, tasks, pd.read_parquet(layout.gold_labels),
                                  load_ontology().raw, vendor=VENDOR, already_ingested_sha256=ledger.seen_before(DAY),
                                  partition_date=DAY)


def test_the_cli_and_the_asset_judge_one_inbox_alike(tmp_path, capsys):
    layout = _root(tmp_path)
    report = _asset_side(layout)
    code = main(["intake", str(layout.inbox(VENDOR) / BATCH), "--root", str(layout.root), "--date", DAY, "--json"])
    cli = json.loads(capsys.readouterr().out)
    assert code == 0

    assert report.reconciles
    assert {k: cli[k] for k in report.counts()} == report.counts()
    assert report.counts()["files_duplicate"] == 2 and report.counts()["files_quarantined"] >= 5

    def rows(records):
        return sorted((r["stage"], r["source_file"], r["record_ref"], r["reason"]) for r in records)

    asset_quarantine = report.quarantine[["stage", "source_file", "record_ref", "reason", "detail"]].to_dict("records")
    assert rows(cli["quarantine"]) == rows(asset_quarantine)
    assert {(f["source_file"], f["status"], f["reason"]) for f in cli["files"]} == set(
        zip(report.files["source_file"], report.files["status"], report.files["reason"]))
    assert [h["passed"] for h in cli["batch_health"]] == [h.passed for h in report.health]
    # the files the exchange did not list (link, FIFO, sub-folder) are counted all the same
    reasons = dict(zip(report.files["source_file"], report.files["reason"]))
    assert (reasons[f"{BATCH}/link.json"], reasons[f"{BATCH}/fifo.json"], reasons[f"{BATCH}/sub"]) == (
        "symlink", "special_file", "subfolder")
    assert reasons[f"{BATCH}/ann-06-again.json"] == "duplicate_file"
    assert report.files.loc[report.files["source_file"] == f"{BATCH}/ann-\\xff.json", "n_accepted"].item() == 6


def test_the_cli_changes_nothing_under_the_root(tmp_path, capsys):
    layout = _root(tmp_path)
    before = sorted((p, p.stat().st_mtime_ns) for p in layout.root.rglob("*") if not p.is_symlink())
    assert main(["intake", str(layout.inbox(VENDOR) / BATCH), "--root", str(layout.root)]) == 0
    after = sorted((p, p.stat().st_mtime_ns) for p in layout.root.rglob("*") if not p.is_symlink())
    assert after == before
    assert "files:" in capsys.readouterr().out
