"""Great Expectations is configured from code, one context per run: nothing under the data root
can change it, and two partitions validating at once do not collide."""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.qa.batch_health import batch_health
from annotation_pipeline.qa.data_docs import OFFLINE_CSS, offline_page
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


class _Addresses(HTMLParser):
    """Every address a page names in an attribute, and its inline CSS (an independent reading of the HTML)."""

    def __init__(self):
        super().__init__()
        self.addresses, self.css, self._in_style = [], "", False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        self.addresses += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "poster", "action") and v]
        self.css += " ".join(v for k, v in attrs if k == "style" and v)

    def handle_data(self, data):
        if self._in_style:
            self.css += data


def _other_hosts(page: str) -> list[str]:
    parser = _Addresses()
    parser.feed(page)
    remote = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
    return ([a for a in parser.addresses if remote.match(a)]
            + re.findall(r"url\(\s*['\"]?\s*(?:https?:)?//[^)]*\)|@import[^;]*//[^;]*;", parser.css, re.IGNORECASE))


def test_data_docs_pages_request_nothing_from_another_host_and_keep_their_styling(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    annotations.loc[0, "label"] = "unicorn"  # one row outside the ontology: a failing expectation on the page

    rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=tmp_path / "docs", run_name="offline")

    pages = sorted((tmp_path / "docs").rglob("*.html"))
    assert len(pages) >= 3  # index, suite, validation
    for page in pages:
        text = page.read_text()
        assert _other_hosts(text) == [], page.name
        assert OFFLINE_CSS in text and "cdn" not in text.lower()
    validation_page = Path(rows.data_docs_url.removeprefix("file://")).read_text()
    assert "unicorn" in validation_page and "Great Expectations" in validation_page  # content kept, logo as text
    # the same result, summarized where the Dagster UI shows it
    summary = {r["column"]: r for r in rows.expectation_results()}
    label = next(r for r in rows.expectation_results() if r["quarantined"])
    assert (label["success"], label["unexpected_count"], label["quarantined"], label["element_count"]) == (
        False, 1, 1, len(annotations))
    assert label["unexpected_percent"] == pytest.approx(100 / len(annotations), abs=1e-3)
    assert sum(not r["success"] for r in summary.values()) == 1


def test_an_offline_page_loses_every_address_on_another_host_and_keeps_local_ones():
    page = ("<html><head><link rel='stylesheet' href='//cdn.example/b.css'/>"
            "<link rel='icon' href='static/favicon.ico'>"
            "<script src=\"https://code.example/jq.js\"></script><script>var local = 1;</script>"
            "<style>.x { background: url('https://s3.example/logo.png') } @import url(http://x.example/a.css);</style>"
            "</head><body><img src='https://s3.example/logo.png' alt='Great Expectations'>"
            "<img src='static/images/local.png'><a href='https://example.org/news'>Subscribe</a>"
            "<a href='../index.html'>Home</a></body></html>")
    out = offline_page(page)
    assert _other_hosts(out) == [] and _other_hosts(page)
    assert "static/favicon.ico" in out and "static/images/local.png" in out and "href='../index.html'" in out
    assert "var local = 1;" in out and "<a >Subscribe</a>" in out and ">Great Expectations</span>" in out


class _IndexLinks(HTMLParser):
    """Links of the index's table rows and whether any script still needs jQuery."""

    def __init__(self):
        super().__init__()
        self.links, self.jquery, self._in_script, self._in_table = [], False, False, 0

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        self._in_table += tag == "table"
        if tag == "a" and self._in_table and dict(attrs).get("href"):
            self.links.append(dict(attrs)["href"])

    def handle_endtag(self, tag):
        self._in_table -= tag == "table"

    def handle_data(self, data):
        if self._in_script and ("$(" in data or "jQuery" in data):
            self.jquery = True


def test_the_offline_index_lists_every_validation_and_suite_with_links_to_existing_pages(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=tmp_path / "docs", run_name="listed")
    site = tmp_path / "docs" / "rows"
    parser = _IndexLinks()
    parser.feed((site / "index.html").read_text())
    assert not parser.jquery
    targets = {(site / link).resolve() for link in parser.links}
    assert Path(rows.data_docs_url.removeprefix("file://")).resolve() in targets
    assert any("expectations/" in link for link in parser.links)
    assert all(t.is_file() for t in targets), targets
