"""A release's quality report as one self-contained HTML file: the evidence an auditor takes away.

Everything is inline: the CSS in a ``<style>`` element and every chart a ``data:`` PNG, so the
file opens offline, from an e-mail attachment or a DVC checkout, and makes no request at all
(these machines have no internet, and Great Expectations' own Data Docs load their CSS from
CDNs). Every value is HTML-escaped: labels and annotator ids come from outside.

Sections: the release (version, fingerprint, parent, what changed since the parent), coverage
and class balance, agreement by class, the QA error taxonomy against gold, annotator scorecards
and vendor figures, the quarantine, and the known limitations of this release.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 980px;
       color: #1d2733; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem;
     border-bottom: 1px solid #d5dbe1; padding-bottom: .2rem; }
.meta { color: #55606b; } table { border-collapse: collapse; margin: .6rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e6e9ed; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f5f7; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; } img { max-width: 100%; }
.note { background: #fff8e5; border-left: 4px solid #e0a800; padding: .4rem .8rem; }
"""


def _escape(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return html.escape(str(value))


def html_table(frame: pd.DataFrame, index: bool = False, max_rows: int = 200) -> str:
    """A DataFrame as an escaped HTML table (the first ``max_rows`` rows, and how many more)."""
    if frame is None or frame.empty:
        return "<p class='meta'>(none)</p>"
    shown = frame.reset_index() if index else frame
    head = "".join(f"<th>{_escape(c)}</th>" for c in shown.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_escape(v)}</td>" for v in row) + "</tr>"
                   for row in shown.head(max_rows).itertuples(index=False))
    more = f"<p class='meta'>… and {len(shown) - max_rows} more rows</p>" if len(shown) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}"


def _image(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _key_values(values: Mapping[str, Any]) -> str:
    return html_table(pd.DataFrame({"what": list(values), "value": list(values.values())}))


def render_release_report(report: Mapping[str, Any], *, tables: Mapping[str, pd.DataFrame],
                          charts: Mapping[str, bytes], limitations: Sequence[str]) -> str:
    """The HTML page. ``report`` is the release's JSON quality report (version, fingerprint,
    parent, dataset, partition, ...); ``tables`` and ``charts`` fill the sections by name
    (``changes_by_class``, ``agreement_by_class``, ``error_taxonomy``, ``annotators``,
    ``vendors``, ``quarantine``; charts ``class_balance``, ``error_taxonomy``, ``reliability``,
    ``gold_accuracy``); a section with nothing to show says so."""
    version = report.get("version", "")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Dataset release {_escape(version)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Dataset release {_escape(version)}</h1>",
        f"<p class='meta'>fingerprint {_escape(report.get('fingerprint'))} · parent "
        f"{_escape(report.get('parent') or '(first release)')} · partition "
        f"{_escape(report.get('partition', {}).get('date'))}</p>",
        "<h2>What changed since the parent release</h2>",
        _key_values(report["changes"]) if report.get("changes") else "<p class='meta'>(first release)</p>",
        html_table(tables.get("changes_by_class")),
        "<h2>Coverage and class balance</h2>", _key_values(report.get("dataset", {})),
        _figures(charts, ["class_balance"]),
        "<h2>Agreement by class</h2>", html_table(tables.get("agreement_by_class")),
        _calibration(report.get("calibration")), _figures(charts, ["reliability"]),
        "<h2>Errors against hidden gold tasks</h2>",
        "<p>Each gold object an annotator saw is correct, of the wrong class, loosely placed, or missed; "
        "objects drawn where there is none are extra.</p>",
        html_table(tables.get("error_taxonomy"), index=True), _figures(charts, ["error_taxonomy"]),
        "<h2>Annotators</h2>", html_table(tables.get("annotators")), _figures(charts, ["gold_accuracy"]),
        "<h2>Vendors</h2>", html_table(tables.get("vendors")),
        "<h2>This partition</h2>", _key_values(report.get("partition", {})),
        html_table(tables.get("quarantine")),
        "<h2>Known limitations</h2>",
        "<div class='note'><ul>" + "".join(f"<li>{_escape(x)}</li>" for x in limitations) + "</ul></div>"
        if limitations else "<p class='meta'>(none recorded)</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _calibration(calibration: Mapping[str, Any] | None) -> str:
    """One sentence on how far consensus confidence is from the accuracy it claims."""
    if not calibration or calibration.get("ece") is None:
        return "<p class='meta'>Calibration: no hidden gold item with a scene answer in this partition.</p>"
    if calibration.get("note"):  # all gold in one confidence bin: an ECE of one point says nothing
        return (f"<p class='note'>Calibration of consensus confidence: {_escape(calibration['note'])} "
                f"(the {_escape(calibration.get('method'))} consensus refitted without the gold answers).</p>")
    return (f"<p>Calibration of consensus confidence: expected calibration error "
            f"<strong>{_escape(float(calibration['ece']))}</strong> on {_escape(calibration.get('n_gold_items'))} "
            f"hidden gold item(s), the {_escape(calibration.get('method'))} consensus refitted without their "
            "answers (0 = a confidence of 0.9 is right nine times in ten).</p>")


def _figures(charts: Mapping[str, bytes], names: Sequence[str]) -> str:
    shown = [_image(charts[n], n.replace("_", " ")) for n in names if charts.get(n)]
    return f"<div class='figures'>{''.join(shown)}</div>" if shown else ""


def known_limitations(dataset: pd.DataFrame, review_queue_size: int, gold_judged: int,
                      min_labels_per_class: int = 30) -> list[str]:
    """What a user of this release should know before training on it, from the figures themselves."""
    notes = []
    if review_queue_size:
        notes.append(f"{review_queue_size} candidate label(s) of the last partition wait for review and are "
                     "not in this release.")
    counts = dataset["label"].value_counts()
    thin = counts[counts < min_labels_per_class]
    if len(thin):
        notes.append("Classes with fewer than {} labels: {}.".format(
            min_labels_per_class, ", ".join(f"{k} ({v})" for k, v in thin.items())))
    if "n_annotators" in dataset and len(dataset):
        single = float((dataset["n_annotators"].fillna(0) <= 1).mean())
        if single > 0:
            notes.append(f"{single:.1%} of labels rest on a single annotator.")
    objects = dataset[dataset["kind"] != "choice"]
    if len(objects):
        notes.append(f"Objects are merged at IoU >= 0.5; {int(objects['item_id'].nunique())} item(s) carry "
                     "objects, and an object no annotator drew cannot be in the release.")
    notes.append(f"Annotator accuracy rests on {gold_judged} judged answer element(s) on hidden gold tasks"
                 + (" — too few to compare annotators closely." if gold_judged < 100 else "."))
    return notes
