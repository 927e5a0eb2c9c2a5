"""A day's vendor returns: counts reconcile, and a file resubmitted on a later day counts once."""

import pandas as pd

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.returns import IntakeLedger, process_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    ANNOTATORS,
    BATCH,
    VENDOR,
    dumps,
    gold_labels,
    make_tasks,
    valid_export,
)


def _inbox(tmp_path):
    inbox = tmp_path / "vendors" / VENDOR / "inbox"
    (inbox / BATCH).mkdir(parents=True)
    for a in ANNOTATORS:
        (inbox / BATCH / f"{a}.json").write_bytes(dumps(valid_export(a)))
    return inbox, sorted((inbox / BATCH).glob("*.json"))


def test_a_file_resubmitted_on_a_later_day_is_not_counted_twice_but_a_rerun_rereads_its_day(tmp_path):
    inbox, files = _inbox(tmp_path)
    ledger = IntakeLedger(tmp_path / "ledger.parquet")
    ontology, tasks, gold = load_ontology().raw, make_tasks(), gold_labels()

    def run(day):
        report = process_vendor_returns({BATCH: (inbox, files)}, tasks, gold, ontology, vendor=VENDOR,
                                        already_ingested_sha256=ledger.seen_before(day), partition_date=day)
        ledger.record(day, report.accepted_sha256)
        return report

    first = run("2026-11-20")
    assert len(first.accepted) == 54 and first.received == len(first.accepted) + first.quarantined
    again = run("2026-11-20")  # rerun of the same day: same result, nothing lost
    pd.testing.assert_frame_equal(first.accepted, again.accepted)
    later = run("2026-11-21")  # the vendor re-sends yesterday's files
    assert later.accepted.empty and later.received == 0
    assert set(later.files["status"]) == {"duplicate_file"}
    assert {h.name: h.passed for h in later.health}["batch_completeness"] is False  # and the gate says so
