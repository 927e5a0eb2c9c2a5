"""Great Expectations Data Docs that open offline: every page rewritten to make no request at all.

GX 1.x pages load Bootstrap, Font Awesome, jQuery, Vega and bootstrap-table from CDNs, and their
logo from S3; these machines are offline, so the pages open unstyled (and an auditor's copy
would phone home). The GX wheel ships no copy of those libraries (only its own styles, which
the page already holds inline), so each page of a built site is rewritten here:

- every ``<link>``, ``<script src>``, ``<img>``, ``<iframe>`` pointing at another host goes;
  the logo becomes its alt text; ``url(...)`` and ``@import`` of another host in inline CSS go;
- links (``<a href>``) to other hosts keep their text and lose the address;
- a compact stylesheet with the part of Bootstrap 4 the pages use (grid, cards, tables, badges,
  alerts, navigation, spacing) and text stand-ins for the few Font Awesome icons is inlined, so
  the page reads as GX laid it out. Collapsed blocks are shown open: there is no script to open
  them, and an auditor should see every unexpected value listed.

- scripts that need jQuery go: the index tables are rendered as HTML in their place, the
  validation page's "Failed Only" filter gets a plain-DOM script, the index's "Clear Filters"
  buttons (filters of a table that is now static) are removed, so no click throws.

Checked in headless Chromium offline (``annotation_pipeline_tests/qa/test_data_docs_browser.py``):
the index lists its rows, no page logs a JavaScript error, every ``onclick`` names a defined function.

Pages stay where GX wrote them; links between pages of the site (relative) keep working.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import fcntl
import html
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.layout import DATA_DOCS_INDEX_PAGE

# Bump when offline_page changes what it writes: a folder published by older code is then not
# reused for an identical rerun (its key, gx_bridge.content_key, includes this).
OFFLINE_FORMAT = 2

# An address on another host: scheme-relative (//host) or http(s)://.
_EXTERNAL = r"""\s*(?:https?:)?//"""
_ATTR = rf"""(?:src|href)\s*=\s*(?:"{_EXTERNAL}[^"]*"|'{_EXTERNAL}[^']*'|{_EXTERNAL}[^\s>]*)"""
_EXTERNAL_ATTR = re.compile(_ATTR, re.IGNORECASE)
_SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>\s*</script\s*>", re.IGNORECASE)
_LOADING_TAG = re.compile(r"<(?:link|script|iframe|source|embed)\b[^>]*>", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_CSS_URL = re.compile(rf"""url\(\s*['"]?{_EXTERNAL}[^)]*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(rf"""@import\s+(?:url\()?\s*['"]?{_EXTERNAL}[^;]*;""", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)

OFFLINE_CSS = """
/* annotation_pipeline: offline stand-in for the Bootstrap 4 subset GX Data Docs use */
*, ::before, ::after { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529;
       background: #fff; }
a { color: #0062cc; } h1, h2, h3, h4, h5, h6, .h6 { margin: 0 0 .5rem; font-weight: 500; line-height: 1.2; }
.h6 { font-size: 1rem; } .lead { font-size: 1.15rem; }
.container, .container-fluid { width: 100%; padding: 0 15px; margin: 0 auto; }
.row { display: flex; flex-wrap: wrap; margin: 0 -15px; }
[class^="col"], [class*=" col"] { position: relative; width: 100%; padding: 0 15px; }
.col-12 { flex: 0 0 100%; max-width: 100%; } .col-6 { flex: 0 0 50%; max-width: 50%; }
@media (min-width: 768px) { .col-md-2 { flex: 0 0 16.67%; max-width: 16.67%; }
  .col-md-10 { flex: 0 0 83.33%; max-width: 83.33%; } }
@media (min-width: 992px) { .col-lg-2 { flex: 0 0 16.67%; max-width: 16.67%; }
  .col-lg-10 { flex: 0 0 83.33%; max-width: 83.33%; } }
.card { display: flex; flex-direction: column; border: 1px solid rgba(0,0,0,.125); border-radius: .25rem;
        margin-bottom: 1rem; background: #fff; }
.card-header { padding: .6rem 1rem; background: rgba(0,0,0,.03); border-bottom: 1px solid rgba(0,0,0,.125); }
.card-body { padding: 1rem; } .card-text { margin: 0; }
.table { width: 100%; margin-bottom: 1rem; border-collapse: collapse; }
.table th, .table td { padding: .5rem; vertical-align: top; border-top: 1px solid #dee2e6; }
.table-sm th, .table-sm td { padding: .3rem; } .table-bordered th, .table-bordered td { border: 1px solid #dee2e6; }
.table-responsive { display: block; width: 100%; overflow-x: auto; }
.badge { display: inline-block; padding: .25em .4em; font-size: 75%; font-weight: 700; border-radius: .25rem; }
.badge-secondary { color: #fff; background: #6c757d; } .badge-success { color: #fff; background: #28a745; }
.badge-danger { color: #fff; background: #dc3545; } .badge-info { color: #fff; background: #17a2b8; }
.alert { padding: .75rem 1.25rem; margin-bottom: 1rem; border: 1px solid transparent; border-radius: .25rem; }
.alert-secondary { color: #383d41; background: #e2e3e5; } .alert-danger { color: #721c24; background: #f8d7da; }
.text-danger { color: #dc3545 !important; } .text-success { color: #28a745 !important; }
.text-muted { color: #6c757d !important; } .bg-light { background: #f8f9fa !important; }
.navbar { display: flex; align-items: center; justify-content: space-between; padding: .5rem 1rem; }
.navbar-brand { font-size: 1.25rem; font-weight: 600; margin-right: 1rem; }
.sticky-top { position: sticky; top: 0; z-index: 1020; background: #fff; }
.border-bottom { border-bottom: 1px solid #dee2e6 !important; } .rounded { border-radius: .25rem !important; }
.nav { display: flex; flex-wrap: wrap; padding: 0; margin: 0; list-style: none; }
.nav-pills { flex-direction: column; } .nav-link { display: block; padding: .4rem .8rem; }
.nav-item { list-style: none; } .active { font-weight: 600; }
.breadcrumb { display: flex; flex-wrap: wrap; padding: .5rem 1rem; margin: 0; list-style: none; border-radius: .25rem; }
.breadcrumb-item + .breadcrumb-item::before { content: "/"; padding: 0 .5rem; color: #6c757d; }
.btn { display: inline-block; padding: .3rem .7rem; border: 1px solid transparent; border-radius: .25rem; }
.btn-primary { color: #fff; background: #007bff; } .btn-group, .btn-group-toggle { display: inline-flex; }
.btn-group-toggle .btn { display: inline-flex; align-items: center; gap: .3rem; cursor: pointer; }
.collapse { display: block !important; } .show-scrollbars { overflow: auto; }
.d-none { display: none !important; } .d-flex { display: flex !important; }
/* after .d-none, as in Bootstrap: "d-none d-md-block" (the table of contents) shows on a wide screen */
@media (min-width: 576px) { .d-sm-block { display: block !important; } }
@media (min-width: 768px) { .d-md-block { display: block !important; }
  .d-md-inline-flex { display: inline-flex !important; } }
.align-items-center { align-items: center !important; } .justify-content-center { justify-content: center !important; }
.float-left { float: left !important; } .h-100 { height: 100% !important; } .mr-auto { margin-right: auto !important; }
.m-0 { margin: 0 !important; } .m-2 { margin: .5rem !important; } .mt-0 { margin-top: 0 !important; }
.mt-1 { margin-top: .25rem !important; } .mt-3 { margin-top: 1rem !important; } .mb-0 { margin-bottom: 0 !important; }
.mb-1 { margin-bottom: .25rem !important; } .mb-2 { margin-bottom: .5rem !important; }
.mb-3 { margin-bottom: 1rem !important; } .mb-4 { margin-bottom: 1.5rem !important; }
.ml-1 { margin-left: .25rem !important; } .ml-2 { margin-left: .5rem !important; }
.mr-0 { margin-right: 0 !important; } .mr-2 { margin-right: .5rem !important; }
.p-0 { padding: 0 !important; } .p-1 { padding: .25rem !important; } .p-2 { padding: .5rem !important; }
.p-3 { padding: 1rem !important; } .px-0 { padding-left: 0 !important; padding-right: 0 !important; }
.pt-0 { padding-top: 0 !important; } .pt-4 { padding-top: 1.5rem !important; } .pb-0 { padding-bottom: 0 !important; }
.pb-1 { padding-bottom: .25rem !important; } .pb-4 { padding-bottom: 1.5rem !important; }
.pl-5 { padding-left: 3rem !important; } .pr-3 { padding-right: 1rem !important; } .pr-5 { padding-right: 3rem !important; }
.fas, .far, .fa { font-style: normal; font-weight: 700; }
.fa-times::before { content: "\\2717"; } .fa-check-circle::before, .fa-check::before { content: "\\2713"; }
.fa-question-circle::before { content: "?"; } .fa-exclamation-triangle::before { content: "!"; }
.ge-offline-logo { font-weight: 600; }
"""


# GX's "Validation Filter" buttons call these two functions, which GX writes with jQuery (never
# loaded offline: a click would throw "hideSucceededValidations is not defined"). The same
# behaviour in plain DOM calls: the elements GX marks as succeeded, and the table-of-contents
# links to sections holding only succeeded expectations, are hidden or shown again.
FILTER_SCRIPT = """
function _geSucceeded() {
  var shown = [];
  document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (e) {
    if (e.parentElement) shown.push(e.parentElement); });
  document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (e) { shown.push(e); });
  document.querySelectorAll(".hide-succeeded-validations-column-section-target-child").forEach(function (e) {
    var section = e.parentElement && e.parentElement.parentElement;
    if (!section) return;
    shown.push(section);
    if (section.id) document.querySelectorAll('a[href$="#' + section.id + '"]').forEach(function (a) {
      shown.push(a); });
  });
  return shown;
}
function showAllValidations() { _geSucceeded().forEach(function (e) { e.style.display = ""; }); }
function hideSucceededValidations() { _geSucceeded().forEach(function (e) { e.style.display = "none"; }); }
"""
# "Clear Filters" clears bootstrap-table's filter controls, which do not exist offline (the table is
# static HTML): the button would only throw "clearTableFilters is not defined".
_CLEAR_FILTERS_BUTTON = re.compile(r"""<button\b[^>]*\bonclick\s*=\s*["']clearTableFilters\([^>]*>.*?</button\s*>""",
                                   re.IGNORECASE | re.DOTALL)
_FILTER_HANDLER = re.compile(r"""\bonclick\s*=\s*["'](?:hideSucceededValidations|showAllValidations)\(""")

_TABLE_SCRIPT = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*columns:\s*(?P<columns>\[.*?\]),"
    r"\s*data:\s*(?P<data>\[.*?\]),\s*toolbar:", re.DOTALL)
_INLINE_SCRIPT = re.compile(r"<script\b[^>]*>(?P<body>.*?)</script\s*>", re.IGNORECASE | re.DOTALL)


def _static_table(columns: list[dict], rows: list[dict]) -> str:
    """The rows GX hands to bootstrap-table (jQuery, never loaded offline) as plain HTML: each row's
    first cell links the page the row names (``_table_row_link_path``, relative to the site)."""
    head = "".join(f"<th>{html.escape(str(c.get('title', '')))}</th>" for c in columns)
    body = []
    for row in rows:
        link = html.escape(str(row.get("_table_row_link_path", "")), quote=True)
        cells = []
        for i, c in enumerate(columns):
            cell = str(row.get(c["field"], ""))  # GX's own cell HTML
            if i == 0 and link:
                cell = f"<a class='ge-offline-row-link' href='{link}'>{cell.strip() or 'open'}</a>"
            cells.append(f"<td>{cell}</td>")
        body.append(f"<tr data-href='{link}'>{''.join(cells)}</tr>")
    return f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"


def _render_tables(page: str) -> str:
    """Fill each GX index table server-side and drop the jQuery scripts that would have filled it."""
    for m in _TABLE_SCRIPT.finditer(page):
        try:
            columns, rows = ast.literal_eval(m.group("columns")), ast.literal_eval(m.group("data"))
        except (ValueError, SyntaxError):
            continue
        table = re.compile(rf"(<table\b[^>]*\bid=\"{re.escape(m.group('id'))}\"[^>]*>)\s*(</table>)")
        page = table.sub(lambda t: t.group(1) + _static_table(columns, rows) + t.group(2), page, count=1)
    return _INLINE_SCRIPT.sub(
        lambda s: "" if ("$(" in s.group("body") or "bootstrapTable" in s.group("body")) else s.group(0), page)


def offline_page(page: str) -> str:
    """One Data Docs page that requests nothing from another host, styled by :data:`OFFLINE_CSS`;
    index tables rendered as static HTML (no script needed), every button left working
    (:data:`FILTER_SCRIPT`) or removed."""
    page = _render_tables(page)
    page = _CLEAR_FILTERS_BUTTON.sub("", page)
    page = _SCRIPT_ELEMENT.sub(_drop_if_external, page)
    page = _LOADING_TAG.sub(_drop_if_external, page)
    page = _IMG.sub(_alt_text_if_external, page)
    page = _ANCHOR.sub(lambda m: _EXTERNAL_ATTR.sub("", m.group(0)), page)
    page = _CSS_IMPORT.sub("", page)
    page = _CSS_URL.sub("none", page)
    style = f"<style>{OFFLINE_CSS}</style>"
    if _FILTER_HANDLER.search(page):
        style += f"<script>{FILTER_SCRIPT}</script>"
    head_end = _HEAD_END.search(page)
    return page[:head_end.start()] + style + page[head_end.start():] if head_end else style + page


def _drop_if_external(match: re.Match) -> str:
    tag = match.group(0)
    return "" if _EXTERNAL_ATTR.search(tag[:tag.index(">") + 1]) else tag


def _alt_text_if_external(match: re.Match) -> str:
    tag = match.group(0)
    if not _EXTERNAL_ATTR.search(tag):
        return tag
    alt = _ALT.search(tag)
    text = (alt.group(1) or alt.group(2)) if alt else ""
    return f"<span class='ge-offline-logo'>{text}</span>" if text else ""


def make_site_offline(site: Path) -> int:
    """Rewrite every HTML page of a built Data Docs site in place; returns how many pages."""
    site = Path(site)
    pages = sorted(site.rglob("*.html"))
    for page in pages:
        text = _repair_static_links(offline_page(page.read_text(encoding="utf-8")), page, site)
        page.write_text(text, encoding="utf-8")
    return len(pages)


_STATIC_REF = re.compile(r"""(?P<attr>(?:src|href)\s*=\s*["'])(?P<ref>(?:\.{1,2}/)*static/[^"']+)""", re.IGNORECASE)


def _repair_static_links(text: str, page: Path, site: Path) -> str:
    """Point ``static/...`` links that miss at the site's static folder. GX 1.x writes a validation
    page four folders deep (``validations/<suite>/<run>/<time>/``) but links its favicon three
    levels up, to a ``validations/static/`` that does not exist."""
    def repair(m: re.Match) -> str:
        ref = m.group("ref")
        if (page.parent / ref).exists():
            return m.group(0)
        wanted = site / ref[ref.index("static/"):]
        return m.group("attr") + os.path.relpath(wanted, page.parent) if wanted.exists() else m.group(0)
    return _STATIC_REF.sub(repair, text)


def external_resources(page: str) -> list[str]:
    """Every ``src``/``href`` (and CSS ``url(...)``/``@import``) of a page that names another host."""
    found = [m.group(0) for m in _EXTERNAL_ATTR.finditer(page)]
    return found + [m.group(0) for m in _CSS_URL.finditer(page)] + [m.group(0) for m in _CSS_IMPORT.finditer(page)]


_LOCAL_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"'#?]+)|url\(\s*["']?([^"')#?]+)""", re.IGNORECASE)


def prune_unused_static(site: Path) -> int:
    """Remove the files under ``site/static/`` that no page of the site names; returns how many.

    GX copies its whole static folder (logos, GIFs, fonts: about 4 MB) into every site, and the
    offline pages use one file of it (the favicon). A folder is kept per validation, so the rest
    would be copied again and again."""
    site = Path(site).resolve()
    used = set()
    for page in site.rglob("*.html"):
        for m in _LOCAL_REF.finditer(page.read_text(encoding="utf-8")):
            ref = (m.group(1) or m.group(2) or "").strip()
            if ref and not re.match(r"^(?:[a-z][\w+.-]*:|//)", ref, re.IGNORECASE):
                used.add((page.parent / ref).resolve())
    removed = 0
    for f in sorted((site / "static").rglob("*")) if (site / "static").is_dir() else []:
        if f.is_file() and f.resolve() not in used:
            f.unlink()
            removed += 1
    for d in sorted((site / "static").rglob("*"), reverse=True) if (site / "static").is_dir() else []:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed


_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def link_day_index(site: Path, href: str) -> None:
    """Put a link to the day's index (``href``, relative to the site) at the top of the site's own
    index, whose table lists only this validation."""
    index = Path(site) / DATA_DOCS_INDEX_PAGE
    if not index.is_file():
        return
    link = (f"<p class='ge-offline-day-link m-2'><a href='{html.escape(href, quote=True)}'>"
            "&larr; every validation of this day</a></p>")
    page = index.read_text(encoding="utf-8")
    body = _BODY_START.search(page)
    index.write_text(page[:body.end()] + link + page[body.end():] if body else link + page, encoding="utf-8")


PUBLICATION_FILE = "publication.json"
DAY_INDEX = DATA_DOCS_INDEX_PAGE


@dataclasses.dataclass(frozen=True)
class Publication:
    """What the day's index says of one published validation site (``<site>/<key>/publication.json``)."""

    key: str            # the folder's name (gx_bridge.content_key)
    site: str           # the folder it is published under: rows, batch_health
    suite: str
    run_name: str
    run_time: str       # ISO 8601, the run that first published it
    success: bool
    evaluated: int      # expectations evaluated
    successful: int     # of those, met
    page: str           # the validation page, relative to the folder

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> "Publication":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})


def day_publications(day_dir: Path) -> list[Publication]:
    """Every validation site published under ``day_dir/<site>/<key>/``, newest first.

    Hidden names are skipped: a folder still being copied (``.<key>-<tag>.tmp``), and the
    hidden copies an older version kept behind a ``<site>`` symbolic link (reached through it)."""
    found = []
    for site in sorted(Path(day_dir).iterdir()) if Path(day_dir).is_dir() else []:
        if site.name.startswith(".") or not site.is_dir():
            continue
        for folder in sorted(site.iterdir()):
            if not folder.name.startswith(".") and (folder / PUBLICATION_FILE).is_file():
                try:
                    found.append(Publication.read(folder / PUBLICATION_FILE))
                except (ValueError, KeyError, TypeError):
                    continue  # not one of ours: listed by no index, removed by nobody
    return sorted(found, key=lambda p: (p.run_time, p.site, p.key), reverse=True)


@contextlib.contextmanager
def _index_lock(day_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``day_dir/.index.lock``: threads and processes on one host queue on it
    (each ``open`` is its own lock holder), so two publishers never write the index from two scans."""
    with (Path(day_dir) / ".index.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield


def write_day_index(day_dir: Path) -> Path:
    """(Re)write ``day_dir/index.html``: every publication of the day, newest first, each with
    links to its validation page and its site. Written atomically under :func:`_index_lock`,
    from a scan of the folders made after taking the lock, so the last writer lists everything
    published before it, its own folder included."""
    day_dir = Path(day_dir)
    day_dir.mkdir(parents=True, exist_ok=True)
    with _index_lock(day_dir):
        page = render_day_index(day_dir.name, day_publications(day_dir))
        return write_bytes_atomic(day_dir / DAY_INDEX, page.encode("utf-8"))


def _readable_time(iso: str) -> str:
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return (t.astimezone(timezone.utc) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")


def render_day_index(day: str, publications: list[Publication]) -> str:
    """The day's index page: plain HTML and :data:`OFFLINE_CSS`, no script."""
    e = html.escape
    rows = []
    for p in publications:
        folder = f"{p.site}/{p.key}"
        badge = ("<span class='badge badge-success'>passed</span>" if p.success
                 else "<span class='badge badge-danger'>failed</span>")
        rows.append(
            f"<tr class='ge-publication'><td>{e(_readable_time(p.run_time))}</td><td>{e(p.site)}</td>"
            f"<td><a class='ge-validation-link' href='{e(folder + '/' + p.page, quote=True)}'>{e(p.suite)}</a></td>"
            f"<td>{e(p.run_name)}</td><td>{badge}</td><td>{p.successful} of {p.evaluated}</td>"
            f"<td><a href='{e(folder + '/index.html', quote=True)}'>site</a></td></tr>")
    body = ("".join(rows) if rows else
            "<tr><td colspan='7' class='text-muted'>nothing published for this day</td></tr>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data Docs {e(day)}</title>"
            f"<style>{OFFLINE_CSS}</style></head><body><div class='container-fluid pt-4'>"
            f"<h1>Data Docs of {e(day)}</h1>"
            f"<p class='lead'>{len(publications)} validation(s), newest first. Each row is one run's "
            f"validation: its folder is kept when later runs publish, so a path a check result "
            f"named stays valid.</p>"
            f"<table class='table table-sm table-bordered' id='ge-day-index'><thead><tr><th>Run time (UTC)</th>"
            f"<th>Site</th><th>Suite (validation page)</th><th>Run name</th><th>Result</th>"
            f"<th>Expectations met</th><th>Site index</th></tr></thead><tbody>{body}</tbody></table>"
            f"</div></body></html>")
