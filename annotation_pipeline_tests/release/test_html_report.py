"""The release report is one HTML file that opens offline: no external resource, values escaped."""

from html.parser import HTMLParser

import pandas as pd

from annotation_pipeline.plots import bar_chart
from annotation_pipeline.release.html_report import known_limitations, render_release_report


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls, self.tags, self.style = [], [], ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "action", "poster") and v]

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "style":
            self.style += data


def test_the_report_holds_no_external_resource_and_escapes_what_came_from_outside():
    dataset = pd.DataFrame({"item_id": ["a", "a", "b"], "kind": ["choice", "box", "choice"],
                            "label": ["day", "car", "fog"], "n_annotators": [3, 1, 2]})
    report = {"version": "v0002", "fingerprint": "abc", "parent": "v0001",
              "changes": {"added": 2, "changed": 1, "removed": 0},
              "dataset": {"labels": 3, "items": 2}, "partition": {"date": "2026-11-20", "review_queue": 4}}
    annotators = pd.DataFrame({"annotator_id": ["<script>alert(1)</script>", "ann2"], "gold_accuracy": [0.9, 0.4]})
    chart = bar_chart(annotators.set_index("annotator_id")["gold_accuracy"], "gold accuracy", "accuracy", 0.6)
    page = render_release_report(
        report, tables={"annotators": annotators, "error_taxonomy": pd.DataFrame({"missed": [1]}, index=["all"])},
        charts={"gold_accuracy": chart, "class_balance": chart},
        limitations=known_limitations(dataset, review_queue_size=4, gold_judged=12))
    parser = _Resources()
    parser.feed(page)
    assert parser.urls and all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "url(" not in parser.style and "@import" not in parser.style
    assert "&lt;script&gt;" in page and "wait for review" in page and "single annotator" in page
