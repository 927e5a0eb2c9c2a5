"""Great Expectations is configured from code, one context per run: nothing under the data root
can change it, and two partitions validating at once do not collide. Each run's Data Docs stay
where its check results point: a later run adds its own folder and lists it in the day's index."""

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
        linked = [o.metadata["data_docs"] for o in health if o.metadata.get("data_docs")]
        assert linked and all(Path(u.removeprefix("file://")).is_file() for u in linked)
        assert all(str(docs[day] / "batch_health") in u for u in linked)
        listed = _day_index_links(docs[day])
        assert _page(rows.data_docs_url) in listed and {_page(u) for u in linked} <= listed
        assert all(str(p).startswith(str(docs[day])) for p in listed)


def _page(url: str) -> Path:
    return Path(url.removeprefix("file://")).resolve()


class _Links(HTMLParser):
    """Every local ``href``/``src`` of a page (not an anchor within it, not another scheme)."""

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v and not re.match(r"^\s*(#|[a-z][\w+.-]*:|//)", v, re.IGNORECASE):
                self.links.append(v.split("#")[0])


def _local_links(page: Path) -> list[Path]:
    parser = _Links()
    parser.feed(page.read_text())
    return [(page.parent / link).resolve() for link in parser.links if link]


def _day_index_pages(day: Path) -> list[Path]:
    """The validation pages the day's index lists, in its order."""
    return [p for p in _local_links(day / "index.html") if p.suffix == ".html" and p.name != "index.html"]


def _day_index_links(day: Path) -> set[Path]:
    return set(_day_index_pages(day))


def _site_opens(page: Path) -> None:
    """The page exists, and so does everything it links, and everything its site's index links."""
    assert page.is_file(), page
    site = next(p for p in page.parents if (p / "publication.json").is_file())
    for linked_from in (page, site / "index.html"):
        missing = [p for p in _local_links(linked_from) if not p.exists()]
        assert not missing, (linked_from, missing)


def test_a_path_from_an_earlier_run_still_opens_after_a_rerun_on_changed_data(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = tmp_path / "data_docs" / "2026-03-01"
    run_name = "returned_annotations-2026-03-01"  # a rerun of the same partition: the same name
    first = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name=run_name)
    changed = annotations.copy()
    changed.loc[0, "label"] = "unicorn"  # the vendor's file was corrected the wrong way: one row now fails
    second = validate_annotations(changed, make_tasks(), ontology, docs_dir=docs, run_name=run_name)

    assert first.success and not second.success
    assert _page(first.data_docs_url) != _page(second.data_docs_url)
    _site_opens(_page(first.data_docs_url))  # what run 1's check result names still opens, links and all
    _site_opens(_page(second.data_docs_url))
    assert "unicorn" not in _page(first.data_docs_url).read_text()  # and still shows run 1's result
    assert "unicorn" in _page(second.data_docs_url).read_text()
    assert _day_index_pages(docs) == [_page(second.data_docs_url), _page(first.data_docs_url)]  # newest first


def test_an_identical_rerun_reuses_its_folder_and_lists_it_once(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = tmp_path / "data_docs" / "2026-03-01"
    runs = [validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name="rerun")
            for _ in range(2)]
    before = sorted(p.relative_to(docs) for p in docs.rglob("*"))

    third = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name="rerun")

    assert runs[0].data_docs_url == runs[1].data_docs_url == third.data_docs_url
    assert sorted(p.relative_to(docs) for p in docs.rglob("*")) == before  # nothing added, nothing left behind
    assert len([p for p in (docs / "rows").iterdir()]) == 1
    assert _day_index_links(docs) == {_page(third.data_docs_url)}


def test_a_site_the_previous_version_left_keeps_opening_beside_the_new_folders(tmp_path):
    """The previous version kept ``<day>/rows`` as a link to a hidden copy: paths through it stay valid."""
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = tmp_path / "data_docs" / "2026-03-01"
    old_page = docs / ".rows-0123456789ab" / "validations" / "old.html"
    old_page.parent.mkdir(parents=True)
    old_page.write_text("<html><body>an earlier run</body></html>")
    (docs / "rows").symlink_to(".rows-0123456789ab")

    rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=docs, run_name="after-upgrade")

    assert (docs / "rows" / "validations" / "old.html").read_text() == old_page.read_text()
    _site_opens(_page(rows.data_docs_url))
    assert _day_index_pages(docs) == [_page(rows.data_docs_url)]  # listed once, not again via the hidden copy


def test_runs_of_one_day_published_at_once_are_all_kept_and_all_listed(tmp_path):
    ontology = load_ontology()
    annotations = _annotations(tmp_path, ontology)
    docs = tmp_path / "data_docs" / "2026-03-01"
    labels = ["unicorn", "dragon", "unicorn", None]  # two identical runs among them
    results, errors = {}, []
    start = threading.Barrier(len(labels))

    def run(i: int) -> None:
        frame = annotations.copy()
        if labels[i]:
            frame.loc[0, "label"] = labels[i]
        try:
            start.wait()
            results[i] = validate_annotations(frame, make_tasks(), ontology, docs_dir=docs, run_name="same-day")
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(labels))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors, errors
    pages = {i: _page(r.data_docs_url) for i, r in results.items()}
    assert pages[0] == pages[2] and len(set(pages.values())) == 3
    for page in pages.values():
        _site_opens(page)
    assert _day_index_links(docs) == set(pages.values())
    assert not [p for p in (docs / "rows").iterdir() if p.name.startswith(".")]  # no staging copy left


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
    (site,) = [p for p in (tmp_path / "docs" / "rows").iterdir()]  # this validation's folder
    parser = _IndexLinks()
    parser.feed((site / "index.html").read_text())
    assert not parser.jquery
    targets = {(site / link).resolve() for link in parser.links}
    assert Path(rows.data_docs_url.removeprefix("file://")).resolve() in targets
    assert any("expectations/" in link for link in parser.links)
    assert all(t.is_file() for t in targets), targets
