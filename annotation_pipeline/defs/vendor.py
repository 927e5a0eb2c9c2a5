"""Vendor wiring: the handoff of a batch (``vendor_batches``) and the vendor figures (``vendor_scorecards``).

What comes back is read and judged by the QA wiring (``defs/qa.py``). The vendor side reads
only ``anonymized_items`` (never ``raw_items``); a test holds this.
"""

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import PRELABELS, VENDOR_SCORECARDS, VENDOR_TASKS
from annotation_pipeline.defs.common import OWNERS, contract_metadata, daily_partitions, table_metadata, ui_metadata
from annotation_pipeline.defs.gold import gold_items, read_gold
from annotation_pipeline.defs.resources import DataRoot, VendorExchange
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.plots import bar_chart, markdown_image, quality_against_cost, weekly_trend
from annotation_pipeline.qa.gold_demand import gold_tasks_demanded
from annotation_pipeline.vendor.handoff import (
    build_vendor_batch,
    record_sent,
    sent_through,
    supersede_returns,
    tasks_sent,
)
from annotation_pipeline.vendor.scorecards import TaskPrices, batch_times, pilot_comparison, weekly_trends
from annotation_pipeline.vendor.scorecards import vendor_scorecards as score_vendors


class HandoffConfig(dg.Config):
    overlap: int = 3      # different annotators per task: enough for a majority and for kappa
    # Hidden gold tasks per batch, at least; more when the last judged batch's gold gate could
    # not tell (qa.gold_demand). 12 x overlap 3 = 36 gold answers judge every day of 2026 of the
    # sample world at the demo's size (a test holds this); 4 left the gate to chance.
    gold_tasks: int = 12


def with_gold_prelabels(prelabels: pd.DataFrame, data_root: DataRoot) -> pd.DataFrame:
    """The day's pre-labels plus the same model's held-out pre-labels of the gold images: a hidden
    gold task without a pre-label would be the one task in the batch without one. Each gold image
    was predicted by a model that did not learn it (prelabel_model), so gold is no easier than
    the rest, and gold accuracy is measured under the same conditions as real work."""
    path = data_root.layout.gold_prelabels
    if prelabels.empty or not path.is_file():
        return prelabels
    gold = pd.read_parquet(path)
    gold = gold[gold["model_version"].isin(prelabels["model_version"].unique())
                & ~gold["item_id"].isin(prelabels["item_id"])]
    return PRELABELS.conform(pd.concat([prelabels, gold], ignore_index=True)) if len(gold) else prelabels


@dg.asset(
    group_name="vendor", partitions_def=daily_partitions, owners=OWNERS, kinds={"labelstudio", "parquet"},
    metadata=contract_metadata(VENDOR_TASKS),
    deps=["gold_set"],
    description="The day's handoff: a batch folder with anonymized images, Label Studio import tasks "
                "carrying the pre-labels as predictions, the guidelines, and a manifest with sha256 "
                "checksums, overlap k and ontology/guideline versions, delivered through the vendor "
                "resource. Hidden gold tasks are mixed in. This table is our private side of it (which "
                "task is which item, which are gold); it is never sent.\n\n" + VENDOR_TASKS.markdown(),
)
def vendor_batches(context: dg.AssetExecutionContext, config: HandoffConfig, data_root: DataRoot,
                   vendor: VendorExchange, labeling_queue: pd.DataFrame, anonymized_items: pd.DataFrame,
                   prelabels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    date = context.partition_key
    exchange = vendor.exchange()
    # Only batches recorded as sent through this exchange, and still held by it, count as sent: a
    # batch sent through another exchange (or to a Label Studio project since deleted) goes again.
    sent = tasks_sent(data_root.layout, vendor.vendor, date, exchange=exchange, holds=vendor.holds)
    # Only items not yet sent for this day go out: a rerun sends nothing again, and uploads that
    # land late make a second, smaller batch instead of paying to label the first one twice.
    new_items = labeling_queue[~labeling_queue["item_id"].isin(sent.loc[~sent["is_gold"], "item_id"])]
    new_batch, location = None, ""
    n_gold = max(config.gold_tasks, gold_tasks_demanded(data_root.layout.gold_demand(vendor.vendor), date))
    if len(new_items):
        new_batch = build_vendor_batch(
            new_items, anonymized_items, with_gold_prelabels(prelabels, data_root), gold_items(data_root), data_root.root,
            data_root.layout.handoff_staging, vendor=vendor.vendor, partition_date=date, overlap=config.overlap,
            n_gold=n_gold, ontology=load_ontology(), guidelines=load_guidelines())
        supersede_returns(data_root.layout, vendor.vendor, new_batch.batch_id, exchange)
        location = vendor.deliver(new_batch)
        record_sent(data_root.layout, new_batch, exchange, location)
    elif labeling_queue.empty:
        context.log.warning("labeling queue is empty: no batch to send")
    tasks = pd.concat([sent, new_batch.tasks] if new_batch else [sent], ignore_index=True)
    tasks = VENDOR_TASKS.conform(tasks.sort_values(["batch_id", "task_id"], kind="stable"))  # same rows, same order
    batches = sorted(tasks["batch_id"].unique())
    # Says where the day's tasks are, not what this run did (``new_tasks`` says that): a rerun that
    # sends nothing prints the same line as the run that sent them.
    places = {sent_through(data_root.layout, b, "location") or "?" for b in sent["batch_id"]}
    there = ", ".join(sorted(places | ({location} if new_batch else set())))
    delivery = f"{exchange}: {len(tasks)} tasks at {there}" if len(tasks) else f"{exchange}: nothing to send"
    return dg.Output(tasks, metadata=ui_metadata({
        "exchange": delivery,
        "batch_id": new_batch.batch_id if new_batch else (batches[-1] if batches else ""),
        "new_batch": new_batch is not None, "delivered_to": location, "batches": dg.MetadataValue.json(batches),
        "tasks": len(tasks), "new_tasks": len(new_batch.tasks) if new_batch else 0,
        "gold_tasks": int(tasks["is_gold"].sum()), "gold_tasks_asked": n_gold, "overlap": config.overlap,
        "answers_expected": int(tasks["overlap"].sum()),
        **table_metadata(tasks, VENDOR_TASKS),
    }, data_root.root))


class VendorFiguresConfig(dg.Config):
    """The contract's prices per label returned, by task type (defaults: ``vendor.scorecards.TaskPrices``,
    placeholders, not a quote), and how many weeks the trends look back."""
    price_choice: float = TaskPrices.choice
    price_box: float = TaskPrices.box
    price_polygon: float = TaskPrices.polygon
    price_quarantined: float = TaskPrices.quarantined
    currency: str = TaskPrices.currency
    trend_weeks: int = 4

    def prices(self) -> TaskPrices:
        return TaskPrices(self.price_choice, self.price_box, self.price_polygon, self.price_quarantined, self.currency)


_SHOWN = ["vendor", "annotator_id", "n_accepted", "cost_per_accepted_label", "turnaround_hours", "tasks_per_hour",
          "rework_rate", "gold_accuracy", "agreement_with_consensus"]


def _markdown(frame: pd.DataFrame, columns: list[str], empty: str) -> dg.MetadataValue:
    shown = frame[[c for c in columns if c in frame.columns]]
    return dg.MetadataValue.md(shown.round(4).to_markdown(index=False) if len(shown) else empty)


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as strict-JSON dicts (NaN -> None), rounded for reading."""
    rounded = frame.round(4)
    return rounded.astype(object).where(rounded.notna(), None).to_dict("records")


def _earlier_days(data_root: DataRoot, day: str, weeks: int) -> list[pd.DataFrame]:
    """This asset's own tables of the days before ``day`` in the trend window (days never run are skipped)."""
    first = date.fromisoformat(day) - timedelta(weeks=weeks)
    days = [(first + timedelta(days=i)).isoformat() for i in range((date.fromisoformat(day) - first).days)]
    return [t for d in days if (t := data_root.read_table("vendor_scorecards", d)) is not None]


def _charts(cards: pd.DataFrame, trends: pd.DataFrame, pilot: pd.DataFrame, currency: str) -> dict:
    vendors, people = cards[cards["scope"] == "vendor"], cards[cards["scope"] == "annotator"]
    charts = {}
    if vendors["cost_per_accepted_label"].notna().any():
        charts["chart_cost_per_label"] = bar_chart(vendors.set_index("vendor")["cost_per_accepted_label"],
                                                   "Cost per accepted label", currency)
    if len(people):
        charts["chart_rework"] = bar_chart(people.set_index("annotator_id")["rework_rate"],
                                           "Rework: quarantined + overturned in review", "share of labels")
    if trends["week"].nunique() > 1:
        charts["chart_weekly_cost"] = weekly_trend(trends, "cost_per_accepted_label", "Cost per accepted label by week",
                                                   currency)
        charts["chart_weekly_gold"] = weekly_trend(trends, "gold_accuracy", "Gold accuracy by week", "gold accuracy")
    if len(pilot) > 1 and pilot["gold_accuracy"].notna().any():
        charts["chart_pilot"] = quality_against_cost(pilot, currency=currency)
    return {k: dg.MetadataValue.md(markdown_image(png, k.removeprefix("chart_").replace("_", " ")))
            for k, png in charts.items()}


@dg.asset(
    group_name="vendor", partitions_def=daily_partitions, owners=OWNERS, kinds={"pandas", "parquet"},
    metadata=contract_metadata(VENDOR_SCORECARDS),
    description="The program manager's figures for the day's batches, per vendor and per annotator: cost per "
                "accepted label (prices per task type in the run config), turnaround (sent -> returned, from "
                "the batch tables), throughput (tasks per working hour), rework (quarantined plus overturned in "
                "review), gold accuracy and agreement with consensus; weekly trends over the last weeks; and a "
                "pilot comparison (quality against cost) on items more than one vendor labeled.\n\n"
                + VENDOR_SCORECARDS.markdown(),
)
def vendor_scorecards(context: dg.AssetExecutionContext, config: VendorFiguresConfig, data_root: DataRoot,
                      returned_annotations: pd.DataFrame, quarantine: pd.DataFrame, vendor_batches: pd.DataFrame,
                      consensus_labels: pd.DataFrame, review_decisions: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    # review_decisions is an input, not a table read from disk: read from disk, the first run of a
    # day (decisions not written yet) counted no overturned answers and a rerun counted them
    day, prices, gold = context.partition_key, config.prices(), read_gold(data_root)
    decisions = review_decisions
    turnaround = pd.concat([batch_times(data_root.layout, str(v), sorted(g["batch_id"].unique()))
                            for v, g in vendor_batches.groupby("vendor")], ignore_index=True) \
        if len(vendor_batches) else None
    cards = score_vendors(returned_annotations, quarantine, vendor_batches, gold, consensus_labels=consensus_labels,
                          review_decisions=decisions, turnaround=turnaround, prices=prices, partition_date=day)
    trends = weekly_trends(pd.concat([*_earlier_days(data_root, day, config.trend_weeks), cards], ignore_index=True))
    pilot = pilot_comparison(returned_annotations, quarantine, vendor_batches, gold,
                             consensus_labels=consensus_labels, prices=prices)
    vendors = cards[cards["scope"] == "vendor"]
    return dg.Output(cards, metadata=ui_metadata({
        "vendors": len(vendors), "annotators": int((cards["scope"] == "annotator").sum()),
        "vendor_figures": dg.MetadataValue.json(_json_records(vendors[_SHOWN[:1] + _SHOWN[2:]])),
        "by_vendor": _markdown(vendors, _SHOWN[:1] + _SHOWN[2:], "(no vendor returned anything)"),
        "by_annotator": _markdown(cards[cards["scope"] == "annotator"], _SHOWN[1:], "(no annotator)"),
        "weekly_trends": _markdown(trends, ["vendor", "week", "days", "n_accepted", "cost_per_accepted_label",
                                            "turnaround_hours", "rework_rate", "gold_accuracy"], "(no week yet)"),
        "pilot": _markdown(pilot, list(pilot.columns),
                           "(no pilot: every item went to one vendor; send the same items to two vendors to compare)"),
        "prices": dg.MetadataValue.json(prices.as_dict()),
        "review_decisions": len(decisions),
        **_charts(cards, trends, pilot, prices.currency),
        **table_metadata(cards, VENDOR_SCORECARDS),
    }, data_root.root))


defs = dg.Definitions(assets=[vendor_batches, vendor_scorecards])
