"""The release report is one HTML file that opens offline: no external resource, values escaped."""

import base64
import io
import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from annotation_pipeline.consensus.calibration import held_out_gold_calibration
from annotation_pipeline.plots import bar_chart
from annotation_pipeline.release.evidence import reliability_chart
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


def _gold_day():
    """Four hidden gold items with three scene answers each, and one ordinary item."""
    votes = {"g1": ["day", "day", "day"], "g2": ["day", "day", "night"], "g3": ["night", "night", "day"],
             "g4": ["fog", "fog", "fog"], "x": ["day", "night", "night"]}
    answers = pd.DataFrame([{"item_id": item, "annotator_id": f"a{i}", "label": label, "kind": "choice"}
                            for item, labels in votes.items() for i, label in enumerate(labels)])
    gold = pd.DataFrame({"item_id": ["g1", "g2", "g3", "g4"], "kind": "choice",
                         "label": ["day", "day", "day", "fog"]})
    return answers, gold


def test_calibration_on_hidden_gold_is_the_expected_calibration_error_worked_by_hand():
    answers, gold = _gold_day()
    part = held_out_gold_calibration(answers, gold, method="mv")
    # majority-vote confidence: g1, g4 at 1.0 and right (gap 0); g2 right and g3 wrong at 2/3
    # (accuracy 0.5, gap 1/6): ECE = (2 * 0 + 2 * 1/6) / 4
    assert part["calibration"] == {"method": "mv", "n_gold_items": 4, "ece": pytest.approx(1 / 12, abs=1e-6),
                                   "note": None}  # two bins hold gold: the diagram can be read
    filled = [b for b in part["calibration_bins"] if b["n"]]
    assert [(b["n"], b["accuracy"]) for b in filled] == [(2, 0.5), (2, 1.0)]
    assert json.loads(json.dumps(part, allow_nan=False)) == part  # strict JSON: empty bins hold None, not NaN
    assert held_out_gold_calibration(answers[answers["item_id"] == "x"], gold)["calibration"]["ece"] is None


def test_the_reliability_diagram_goes_inline_into_the_report_with_its_ece():
    answers, gold = _gold_day()
    report = {"version": "v0001", "fingerprint": "f", "dataset": {"labels": 1},
              "partition": {"date": "2026-11-20"}, **held_out_gold_calibration(answers, gold, method="mv")}
    chart = reliability_chart(report)
    page = render_release_report(report, tables={}, charts={"reliability": chart}, limitations=[])
    parser = _Resources()
    parser.feed(page)
    assert chart and parser.urls == [f"data:image/png;base64,{base64.b64encode(chart).decode()}"]
    assert "expected calibration error <strong>0.08333</strong> on 4 hidden gold item(s)" in page
    assert reliability_chart({"calibration_bins": []}) is None


def _unanimous_gold_day():
    """Three hidden gold items, each answered unanimously: majority-vote confidence 1.0 for all of them,
    and the crowd is unanimously wrong on g3."""
    votes = {"g1": ["day"] * 3, "g2": ["fog"] * 3, "g3": ["night"] * 3, "x": ["day", "night", "night"]}
    answers = pd.DataFrame([{"item_id": item, "annotator_id": f"a{i}", "label": label, "kind": "choice"}
                            for item, labels in votes.items() for i, label in enumerate(labels)])
    gold = pd.DataFrame({"item_id": ["g1", "g2", "g3"], "kind": "choice", "label": ["day", "fog", "day"]})
    return answers, gold


def test_a_day_whose_gold_sits_in_one_confidence_bin_says_calibration_cannot_be_judged_in_report_and_chart():
    from PIL import Image

    answers, gold = _unanimous_gold_day()
    report = {"version": "v0001", "fingerprint": "f", "dataset": {"labels": 1},
              "partition": {"date": "2026-11-20"}, **held_out_gold_calibration(answers, gold, method="mv")}
    says = ("all 3 gold items have confidence in [0.90, 1.00]: calibration cannot be judged from this day; "
            "67% right there")
    assert report["calibration"]["note"] == says
    chart = reliability_chart(report)
    assert Image.open(io.BytesIO(chart)).text["Description"] == says  # the chart states it, not only a dot
    page = render_release_report(report, tables={}, charts={"reliability": chart}, limitations=[])
    assert says in page and "expected calibration error" not in page
    # a day whose gold spans bins keeps the chart's plain reading and the ECE sentence
    answers, gold = _gold_day()
    spread = {**report, **held_out_gold_calibration(answers, gold, method="mv")}
    assert "Description" not in Image.open(io.BytesIO(reliability_chart(spread))).text
    assert "expected calibration error" in render_release_report(spread, tables={}, charts={}, limitations=[])
