"""Intake holds against classes of hostile input: each ends accepted or quarantined with a reason.

Through the public intake function: every hostile value at every place of a Label Studio and a
COCO export, whole-file damage, and every kind of folder entry. The rows of the untouched task
are never lost, counts reconcile per file, and what is kept can be stored as Parquet.
"""

from __future__ import annotations

import io
import os
import socket
import stat
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.vendor.export_format import MAX_FILE_BYTES
from annotation_pipeline.vendor.intake import batch_folder_entries, display_name, intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import (
    BATCH,
    HOSTILE_VALUES,
    VENDOR,
    dumps,
    field_mutations,
    file_mutations,
    make_tasks,
    valid_export,
)

MUTATIONS = field_mutations()
SITES = sorted({m.name.split("~")[0] for m in MUTATIONS})
VALUES = list(HOSTILE_VALUES)


def _sample() -> list:
    """Every site and every hostile value at least once (the whole sweep is a slow test)."""
    by_name = {m.name: m for m in MUTATIONS}
    return [by_name[f"{site}~{VALUES[(i * 7) % len(VALUES)]}.json"] for i, site in enumerate(SITES)]


@pytest.fixture(scope="module")
def ontology():
    return load_ontology()


@pytest.fixture
def inbox(tmp_path) -> Path:
    folder = tmp_path / "vendors" / VENDOR / "inbox"
    (folder / BATCH).mkdir(parents=True)
    return folder


def _storable(*frames: pd.DataFrame) -> None:
    """What intake returns must be writable as Parquet (a lone surrogate is not)."""
    for frame in frames:
        frame.to_parquet(io.BytesIO())


def test_the_corpus_is_large_enough_to_mean_something():
    assert len(MUTATIONS) > 100 and len(SITES) * len(HOSTILE_VALUES) == len(MUTATIONS)


def test_the_sample_holds_every_site_and_every_value():
    sample = _sample()
    assert {m.name.split("~")[0] for m in sample} == set(SITES)
    assert {m.name.split("~")[1].removesuffix(".json") for m in sample} == set(VALUES)


def test_hostile_values_at_every_site_are_judged_and_the_untouched_task_survives(inbox, ontology):
    _judge(_sample(), inbox, ontology)


@pytest.mark.slow
@pytest.mark.parametrize("site", SITES)
def test_every_hostile_value_at_this_site_is_judged_and_the_untouched_task_survives(site, inbox, ontology):
    _judge([m for m in MUTATIONS if m.name.split("~")[0] == site], inbox, ontology)


def _judge(mutations: list, inbox: Path, ontology) -> None:
    paths = []
    for m in mutations:
        paths.append(inbox / BATCH / m.name)
        paths[-1].write_bytes(m.content)
    result = intake_vendor_returns(paths, inbox, make_tasks(), ontology, vendor=VENDOR)
    assert result.reconciles and len(result.files) == len(mutations)
    _storable(result.annotations, result.quarantine, result.files)
    files = result.files.set_index("source_file")
    for m in mutations:
        row = files.loc[f"{BATCH}/{m.name}"]
        if row["status"] == "quarantined":  # only a file the JSON scanner cannot read may be lost whole
            assert m.name.endswith("~deep_10k.json") and row["reason"] == "too_deep", (m.name, row["reason"])
            continue
        assert row["status"] == "accepted", (m.name, row["reason"], row["detail"])
        mine = result.annotations[result.annotations["source_file"] == f"{BATCH}/{m.name}"]
        assert (mine["task_id"] == "2").sum() == m.intact_rows, m.name
    assert (result.quarantine["detail"].str.len() > 10).all()


@pytest.mark.parametrize("case", file_mutations(), ids=lambda c: c.name)
def test_a_damaged_file_is_one_quarantined_record_and_the_next_file_is_read(case, inbox, ontology):
    bad, good = inbox / BATCH / case.name, inbox / BATCH / "zz-good.json"
    bad.write_bytes(case.content)
    good.write_bytes(dumps(valid_export("ann-01")))
    result = intake_vendor_returns([bad, good], inbox, make_tasks(), ontology, vendor=VENDOR)
    assert result.reconciles
    assert result.quarantine["reason"].value_counts().to_dict() == case.reasons
    assert result.n_accepted == 18
    _storable(result.quarantine, result.files)


def _make_entries(inbox: Path, tmp_path: Path) -> dict[str, str]:
    """Every kind of folder entry next to one valid file; returns shown name -> expected reason."""
    folder = inbox / BATCH
    (folder / "ann-01.json").write_bytes(dumps(valid_export("ann-01")))
    outside = tmp_path / "outside.json"
    outside.write_bytes(dumps(valid_export("ann-09")))
    os.symlink(folder / "ann-01.json", folder / "link-inside.json")
    os.symlink(outside, folder / "link-outside.json")
    os.symlink(tmp_path / "nowhere.json", folder / "link-dangling.json")
    os.symlink("/etc/passwd", folder / "link-passwd.json")
    os.mkfifo(folder / "fifo.json")
    (folder / "sub").mkdir()
    (folder / "sub" / "ann-04.json").write_bytes(dumps(valid_export("ann-04")))
    with open(folder / "huge.json", "wb") as sparse:
        sparse.truncate(MAX_FILE_BYTES + 1)
    expected = {"link-inside.json": "symlink", "link-outside.json": "path_outside_inbox",
                "link-dangling.json": "dangling_symlink", "link-passwd.json": "path_outside_inbox",
                "fifo.json": "special_file", "sub": "subfolder", "huge.json": "file_too_large",
                "ann-01.json": "", "ann-02-\udcff\udcfe.json": "", "a" * 250 + ".json": ""}
    (folder / os.fsdecode(b"ann-02-\xff\xfe.json")).write_bytes(dumps(valid_export("ann-02")))
    (folder / ("a" * 250 + ".json")).write_bytes(dumps(valid_export("ann-03")))
    try:
        os.mknod(folder / "device.json", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        expected["device.json"] = "special_file"
    except (PermissionError, OSError):
        pass  # not allowed in this container: the FIFO and the socket stand for special files
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "s.sock"))
        expected["s.sock"] = "special_file"
    except OSError:
        pass  # path longer than a socket address allows
    finally:
        sock.close()
    return {display_name(name): reason for name, reason in expected.items()}


def test_every_entry_of_a_batch_folder_is_counted_and_links_are_never_followed(inbox, tmp_path, ontology):
    expected = _make_entries(inbox, tmp_path)
    entries = batch_folder_entries(inbox, BATCH)
    result = intake_vendor_returns(entries, inbox, make_tasks(), ontology, vendor=VENDOR)
    assert result.reconciles and len(result.files) == len(expected)
    reasons = dict(zip(result.files["source_file"].str.removeprefix(f"{BATCH}/"), result.files["reason"]))
    assert reasons == expected
    accepted_files = set(result.annotations["source_file"])
    assert accepted_files == {f"{BATCH}/ann-01.json", f"{BATCH}/ann-02-\\xff\\xfe.json", f"{BATCH}/{'a' * 250}.json"}
    assert result.n_accepted == 3 * 18 and "ann-09" not in set(result.annotations["annotator_id"])
    _storable(result.annotations, result.quarantine, result.files)


def test_a_batch_folder_that_is_a_link_out_of_the_inbox_is_not_read(inbox, tmp_path, ontology):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "ann-01.json").write_bytes(dumps(valid_export("ann-01")))
    os.symlink(elsewhere, inbox / "b-linked")
    given = [inbox / "b-linked" / "ann-01.json", *batch_folder_entries(inbox, "b-linked")]
    result = intake_vendor_returns(given, inbox, make_tasks(batch_id="b-linked"), ontology, vendor=VENDOR)
    assert result.files["reason"].tolist() == ["path_outside_inbox", "no_batch_folder"]
    assert result.n_accepted == 0 and result.reconciles
