"""Data Docs as a person sees them: opened offline in headless Chromium, not read as HTML.

A test on the HTML once passed while the index still threw ``$ is not defined`` in a browser
and showed an empty list (issue #22). Here each page is opened from ``file://`` with the network
off; a probe script appended to a copy of the page (same folder, so relative links are the
page's own) reports what the browser built: the rows of the index's tables, whether every
``onclick`` names a function that exists, and what "Failed Only" leaves visible. Every console
message is a failure: the pages log nothing when they work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.qa.row_suite import validate_annotations
from annotation_pipeline.vendor.intake import intake_vendor_returns
from annotation_pipeline_tests.malformed.corpus import BATCH, VENDOR, dumps, make_tasks, valid_export

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install "
                                                "chromium; .ci/run installs it when the package index answers)"),
]

_PROBE = """<script>
(function () {
  var b = document.body, visible = function (el) { return !!(el.offsetWidth || el.offsetHeight); };
  var undefinedHandlers = [];
  document.querySelectorAll("[onclick]").forEach(function (el) {
    var m = /^\\s*([A-Za-z_$][\\w$]*)\\s*\\(/.exec(el.getAttribute("onclick"));
    if (m && typeof window[m[1]] !== "function") undefinedHandlers.push(m[1]);
  });
  b.setAttribute("data-probe-undefined-handlers", undefinedHandlers.join(","));
  var rows = [].filter.call(document.querySelectorAll("table tbody tr"), function (tr) {
    return visible(tr) && tr.querySelector("a[href]"); });
  b.setAttribute("data-probe-linked-rows", rows.length);
  b.setAttribute("data-probe-row-links", rows.map(function (tr) {
    return tr.querySelector("a[href]").getAttribute("href"); }).join(" "));
  var failedOnly = document.querySelector("[onclick^='hideSucceededValidations']");
  if (failedOnly) {
    failedOnly.click();
    var succeeded = document.querySelectorAll(".hide-succeeded-validation-target-child");
    b.setAttribute("data-probe-succeeded", succeeded.length);
    b.setAttribute("data-probe-succeeded-visible", [].filter.call(succeeded, visible).length);
  }
  b.setAttribute("data-probe-text", b.innerText.replace(/\\s+/g, " ").slice(0, 20000));
})();
</script>"""


def _open(page: Path, profile: Path) -> tuple[dict[str, str], list[str]]:
    """Open a copy of ``page`` with the probe in headless Chromium: (probe results, console lines)."""
    probed = page.with_name(f".probe-{page.name}")
    probed.write_text(re.sub(r"</body\s*>", lambda m: _PROBE + m.group(0), page.read_text(), count=1))
    profile.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"headless Chromium did not finish opening {page} in 120 s")
    finally:
        probed.unlink()
    assert "data-probe-" in done.stdout, f"Chromium showed no page for {page}: {done.stderr[-2000:]}"
    probe = dict(re.findall(r'data-probe-([\w-]+)="([^"]*)"', done.stdout))
    return probe, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    """A day's Data Docs with one failing expectation: (the day's folder, the validation page)."""
    tmp = tmp_path_factory.mktemp("browser")
    ontology = load_ontology()
    (tmp / "inbox" / BATCH).mkdir(parents=True)
    files = []
    for annotator in ("ann-01", "ann-02", "ann-03"):
        files.append(tmp / "inbox" / BATCH / f"{annotator}.json")
        files[-1].write_bytes(dumps(valid_export(annotator)))
    annotations = intake_vendor_returns(files, tmp / "inbox", make_tasks(), ontology, vendor=VENDOR).annotations
    annotations.loc[0, "label"] = "unicorn"
    day = tmp / "data_docs" / "2026-03-01"
    rows = validate_annotations(annotations, make_tasks(), ontology, docs_dir=day, run_name="browser")
    return day, Path(rows.data_docs_url.removeprefix("file://"))


def test_the_day_index_lists_the_validation_in_a_browser_without_a_script_error(site, tmp_path):
    day, page = site
    probe, console = _open(day / "index.html", tmp_path / "profile")
    assert console == []
    assert probe["undefined-handlers"] == ""
    assert int(probe["linked-rows"]) == 1
    assert (day / probe["row-links"]).resolve() == page.resolve()
    assert "annotations_rows__street-scenes_v1_0_0" in probe["text"] and "failed" in probe["text"]


def test_the_gx_site_index_lists_its_validation_and_suite_in_a_browser_without_a_script_error(site, tmp_path):
    day, page = site
    index = next(p for p in page.parents if p.parent.name == "rows") / "index.html"
    probe, console = _open(index, tmp_path / "profile")
    assert console == []  # it used to be: Uncaught ReferenceError: $ is not defined
    assert probe["undefined-handlers"] == ""  # no "Clear Filters" calling a function that is not there
    links = probe["row-links"].split()
    assert int(probe["linked-rows"]) == 2 == len(links)  # the validation, and the suite
    assert {(index.parent / link).resolve() for link in links} == {
        page.resolve(), (index.parent / "expectations" / "annotations_rows__street-scenes_v1_0_0.html").resolve()}
    assert "returned_annotations-" in probe["text"]  # the validation row shows its batch


def test_the_validation_page_filters_failed_expectations_in_a_browser_without_a_script_error(site, tmp_path):
    _, page = site
    probe, console = _open(page, tmp_path / "profile")
    assert console == []
    assert probe["undefined-handlers"] == ""
    assert int(probe["succeeded"]) == 15 and probe["succeeded-visible"] == "0"  # "Failed Only" clicked
    assert "choice:unicorn" in probe["text"] and "Table of Contents" in probe["text"]  # the failure stays shown


def test_the_suite_page_opens_in_a_browser_without_a_script_error(site, tmp_path):
    _, page = site
    suite = next(p for p in page.parents if p.parent.name == "rows") / "expectations" / \
        "annotations_rows__street-scenes_v1_0_0.html"
    probe, console = _open(suite, tmp_path / "profile")
    assert console == [] and probe["undefined-handlers"] == ""
    assert "label belongs to the ontology" in probe["text"]
