"""What a release carries beside its labels, for people who take it away.

- ``changes_since``: the diff against the parent release, which goes into the quality report
  (so "was this evaluated before or after the label fixes?" has an answer in the release);
- ``release_attachments``: the files written into the release folder with the labels:
  ``quality_report.html`` (self-contained), ``export_coco.json`` and
  ``export_label_studio.json``. They are covered by the manifest's sha256s like every other
  file of the release.
"""

from __future__ import annotations

import json

import pandas as pd

from annotation_pipeline.consensus.calibration import held_out_gold_calibration
from annotation_pipeline.ontology import Ontology
from annotation_pipeline.plots import bar_chart, reliability_diagram
from annotation_pipeline.qa.error_taxonomy import error_taxonomy, gold_error_outcomes
from annotation_pipeline.release.diff import diff_releases
from annotation_pipeline.release.exports import to_coco, to_label_studio
from annotation_pipeline.release.html_report import known_limitations, render_release_report

IMAGE_COLUMNS = ["item_id", "file_name", "width", "height"]


def release_images(anonymized_items: pd.DataFrame) -> pd.DataFrame:
    """The image index a release keeps for its exports: file name and size of each item."""
    return pd.DataFrame({"item_id": anonymized_items["item_id"].astype("string"),
                         "file_name": anonymized_items["image_path"].astype(str).str.rsplit("/", n=1).str[-1],
                         "width": anonymized_items["width"].astype("Int64"),
                         "height": anonymized_items["height"].astype("Int64")})


def changes_since(previous: pd.DataFrame | None, dataset: pd.DataFrame) -> dict:
    """The report's ``changes`` (summary) and ``changes_by_class`` (records) against the parent release;
    the first release adds everything."""
    difference = diff_releases(dataset.iloc[0:0] if previous is None else previous, dataset)
    by_class = difference.by_class().rename_axis("label").reset_index()
    return {"changes": difference.summary(), "changes_by_class": by_class.to_dict("records")}


def calibration_report(answers: pd.DataFrame, gold: pd.DataFrame) -> dict:
    """The report's ``calibration`` (ECE of consensus confidence on hidden gold tasks, fitted
    without their answers) and ``calibration_bins`` (the reliability diagram's table)."""
    return held_out_gold_calibration(answers, gold)


def reliability_chart(report: dict) -> bytes | None:
    """The reliability diagram of a report that holds ``calibration_bins`` (None when it holds none)."""
    bins = pd.DataFrame(report.get("calibration_bins") or [])
    if bins.empty or not (bins["n"] > 0).any():
        return None
    calibration = report.get("calibration", {})
    return reliability_diagram(bins.astype({"mean_confidence": float, "accuracy": float}),
                               f"Consensus confidence on {calibration.get('n_gold_items', 0)} hidden gold items",
                               ece=calibration.get("ece"), note=calibration.get("note"))


def _vendor_figures(answers: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    if answers.empty:
        return pd.DataFrame()
    per_vendor = answers.groupby("vendor").agg(answers=("annotation_id", "size"),
                                               annotators=("annotator_id", "nunique"),
                                               tasks=("task_id", "nunique"))
    if len(outcomes):
        vendor_of = answers.drop_duplicates("annotator_id").set_index("annotator_id")["vendor"]
        judged = outcomes.assign(vendor=outcomes["annotator_id"].map(vendor_of))
        per_vendor["gold_accuracy"] = judged["outcome"].eq("correct").groupby(judged["vendor"]).mean()
    return per_vendor.reset_index()


def release_attachments(report: dict, dataset: pd.DataFrame, images: pd.DataFrame, ontology: Ontology, *,
                        agreement: pd.DataFrame, scorecards: pd.DataFrame,
                        answers: pd.DataFrame, gold: pd.DataFrame, quarantine: pd.DataFrame) -> dict[str, bytes]:
    """The release's attachments by file name (the report dict already holds version and parent)."""
    outcomes = gold_error_outcomes(answers, gold)
    taxonomy = error_taxonomy(outcomes)
    charts = {"class_balance": bar_chart(dataset["label"].value_counts().sort_index(), "Labels per class", "labels")}
    if "all" in taxonomy.index:
        charts["error_taxonomy"] = bar_chart(taxonomy.loc["all"], "Outcomes on hidden gold tasks", "count")
    if len(scorecards) and scorecards["gold_accuracy"].notna().any():
        charts["gold_accuracy"] = bar_chart(scorecards.set_index("annotator_id")["gold_accuracy"],
                                            "Accuracy on hidden gold tasks", "gold accuracy")
    reliability = reliability_chart(report)
    if reliability is not None:
        charts["reliability"] = reliability
    by_class = agreement[agreement["scope"] == "class"].pivot_table(index="key", columns="metric", values="value")
    html = render_release_report(
        report,
        tables={"changes_by_class": pd.DataFrame(report.get("changes_by_class", [])), "agreement_by_class": by_class.reset_index(),
                "error_taxonomy": taxonomy, "annotators": scorecards, "vendors": _vendor_figures(answers, outcomes),
                "quarantine": quarantine.value_counts(["stage", "reason"]).rename("count").reset_index()
                if len(quarantine) else pd.DataFrame()},
        charts=charts,
        limitations=known_limitations(dataset, int(report.get("partition", {}).get("review_queue", 0)),
                                      gold_judged=len(outcomes)))
    version = str(report.get("version", ""))
    return {
        "quality_report.html": html.encode("utf-8"),
        "export_coco.json": json.dumps(to_coco(dataset, images, ontology, release=version), allow_nan=False).encode(),
        "export_label_studio.json": json.dumps(to_label_studio(dataset, images, ontology), allow_nan=False).encode(),
    }
