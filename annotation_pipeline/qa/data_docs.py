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

Pages stay where GX wrote them; links between pages of the site (relative) keep working.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

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
  .col-md-10 { flex: 0 0 83.33%; max-width: 83.33%; } .d-md-block { display: block !important; }
  .d-md-inline-flex { display: inline-flex !important; } }
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
.collapse { display: block !important; } .show-scrollbars { overflow: auto; }
.d-none { display: none !important; } .d-flex { display: flex !important; }
@media (min-width: 576px) { .d-sm-block { display: block !important; } }
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
    index tables rendered as static HTML (no script needed)."""
    page = _render_tables(page)
    page = _SCRIPT_ELEMENT.sub(_drop_if_external, page)
    page = _LOADING_TAG.sub(_drop_if_external, page)
    page = _IMG.sub(_alt_text_if_external, page)
    page = _ANCHOR.sub(lambda m: _EXTERNAL_ATTR.sub("", m.group(0)), page)
    page = _CSS_IMPORT.sub("", page)
    page = _CSS_URL.sub("none", page)
    style = f"<style>{OFFLINE_CSS}</style>"
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
    pages = sorted(Path(site).rglob("*.html"))
    for page in pages:
        page.write_text(offline_page(page.read_text(encoding="utf-8")), encoding="utf-8")
    return len(pages)


def external_resources(page: str) -> list[str]:
    """Every ``src``/``href`` (and CSS ``url(...)``/``@import``) of a page that names another host."""
    found = [m.group(0) for m in _EXTERNAL_ATTR.finditer(page)]
    return found + [m.group(0) for m in _CSS_URL.finditer(page)] + [m.group(0) for m in _CSS_IMPORT.finditer(page)]
