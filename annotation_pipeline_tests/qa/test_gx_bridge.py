"""Great Expectations is configured from code, one context per run: nothing under the data root
can change it, and two partitions validating at once do not collide."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.qa.batch_health import batch_health
from annotation_pipeline.qa.row_suite import validate_annotations
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import BATCH, VENDOR, dumps, gold_labels, make_tasks, valid_export


def _annotations(tmp_path: Path, ontology) -> pd.DataFrame:
    inbox = tmp_path / "inbox"
    (inbox / BATCH).mkdir(parents=True)
    files = []
    for annotator in ("ann-01", "ann-02", "ann-03"):
        files.append(inbox / BATCH / f"{annotator}.json")
        files[-1].write_bytes(dumps(valid_export(annotator)))
    return intake_vendor_returns(files, inbox, make_tasks(), ontology, vendor=VENDOR).annotations


def test_two_partitions_validated_at_once_each_get_their_own_complete_data_docs(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = {day: tmp_path / "data_docs" / day for day in ("2026-03-01", "2026-03-02")}
    results, errors = {}, []
    start = threading.Barrier(len(docs))

    def run(day: str) -> None:
        try:
            start.wait()
            rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs[day],
                                        run_name=f"returned_annotations-{day}")
            health = batch_health(rows.accepted, rows.quarantined, len(annotations), make_tasks(), gold_labels(),
                                  ontology, docs_dir=docs[day], run_name=f"batch_health-{day}")
            results[day] = (rows, health)
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(day,)) for day in docs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors, errors
    for day, (rows, health) in results.items():
        assert rows.success and rows.n_quarantined == 0
        page = Path(rows.data_docs_url.removeprefix("file://"))
        assert page.is_file() and str(page).startswith(str(docs[day] / "rows")), page
        assert (docs[day] / "rows" / "index.html").is_file()
        assert (docs[day] / "batch_health" / "index.html").is_file()
        linked = [o.metadata["data_docs"] for o in health if o.metadata.get("data_docs")]
        assert linked and all(Path(u.removeprefix("file://")).is_file() for u in linked)
        assert all(str(docs[day]) in u for u in linked)


def test_a_rerun_replaces_the_site_whole(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = tmp_path / "data_docs" / "2026-03-01"
    first = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name="first")
    second = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name="second")
    assert Path(second.data_docs_url.removeprefix("file://")).is_file()
    assert not Path(first.data_docs_url.removeprefix("file://")).exists()  # the old site is gone, not mixed in
    hidden = [p for p in docs.iterdir() if p.name.startswith(".rows")]
    assert len(hidden) == 1  # one copy of the site, nothing left half-written


@pytest.mark.parametrize("where", ["docs", "docs/rows", "docs/gx"])
def test_yaml_plugins_and_environment_variables_under_the_docs_folder_have_no_effect(tmp_path, monkeypatch, where):
    """A great_expectations.yml with ${VAR} and a plugins/ folder with code: never read, never run."""
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    monkeypatch.setenv("QA_GATES_SECRET_FOR_TEST", "s3cr3t-value")
    marker = tmp_path / "plugin_was_imported"
    planted = tmp_path / where
    (planted / "plugins" / "expectations").mkdir(parents=True, exist_ok=True)
    for folder in (planted / "plugins", planted / "plugins" / "expectations"):
        (folder / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (planted / "great_expectations.yml").write_text(
        "config_version: 4.0\nplugins_directory: plugins/\n"
        "data_docs_sites:\n  leak:\n    class_name: SiteBuilder\n    store_backend:\n"
        "      class_name: TupleFilesystemStoreBackend\n      base_directory: ${QA_GATES_SECRET_FOR_TEST}/\n")

    rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=tmp_path / "docs", run_name="planted")

    assert rows.success and Path(rows.data_docs_url.removeprefix("file://")).is_file()
    assert not marker.exists()
    assert not list(tmp_path.rglob("s3cr3t-value*")) and not (Path.cwd() / "s3cr3t-value").exists()
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "docs").rglob("*.html"))
    assert "s3cr3t-value" not in written
