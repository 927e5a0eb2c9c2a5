"""The program manager's vendor figures: cost, turnaround, throughput, rework and quality.

Per vendor and per annotator, for one day's batches (``vendor_scorecards``), summed into
weeks (``weekly_trends``), and for a pilot, two vendors side by side on the items both
labeled (``pilot_comparison``). Definitions, in the words a contract would use:

- a *label* is one returned answer element: a scene choice, a box or a polygon;
- *cost* is what the vendor bills for the labels it returned, accepted or not, at
  :class:`TaskPrices` (a price per task type: choice, box, polygon; a quarantined record at one
  flat rate, since its kind often cannot be read); *cost per accepted label* divides it by the
  labels that passed intake and QA, so rework makes good labels dearer;
- *rework* is what had to be redone: records quarantined by intake or QA, plus accepted answers
  behind review candidates that a reviewer overrode or rejected (``review_decisions``);
- *turnaround* is sent -> returned per batch (:func:`batch_times` reads it from the batch
  tables); *throughput* is tasks answered per hour of annotator working time (lead time);
- *gold accuracy* is judged on hidden gold tasks (``qa.gold``), *agreement* is the share of scene
  choices equal to the consensus label (``qa.scorecards.consensus_agreement``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from annotation_pipeline.contracts import VENDOR_SCORECARDS
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.qa.gold import gold_answer_outcomes
from annotation_pipeline.qa.scorecards import consensus_agreement

VENDOR_STAGES = ("intake", "qa")   # quarantine stages whose records a vendor returned
OVERTURNING = ("override", "reject")


@dataclass(frozen=True)
class TaskPrices:
    """What a vendor bills per label returned, by task type. The defaults are placeholders of the
    right order for outsourced image labeling, not a quote: set the contract's prices."""
    choice: float = 0.02       # one scene classification
    box: float = 0.06          # one bounding box
    polygon: float = 0.15      # one polygon outline
    quarantined: float = 0.02  # one record quarantined by intake or QA (its kind is often unreadable)
    currency: str = "USD"

    def of_kinds(self, kinds: pd.Series) -> np.ndarray:
        prices = {"choice": self.choice, "box": self.box, "polygon": self.polygon}
        return kinds.astype("string").map(prices).astype(float).fillna(self.quarantined).to_numpy()

    def as_dict(self) -> dict:
        return asdict(self)


_KEYS = ["vendor", "annotator_id"]
Prices = TaskPrices | Mapping[str, TaskPrices]   # one price list, or one per vendor (a pilot's)


def prices_of(prices: Prices, vendor: str) -> TaskPrices:
    """The price list of ``vendor`` (a vendor missing from a mapping pays the defaults)."""
    return prices.get(vendor, TaskPrices()) if isinstance(prices, Mapping) else prices


def _label_prices(answers: pd.DataFrame, prices: Prices) -> np.ndarray:
    """Each label's price at its vendor's list (a loop over the day's few vendors, not over rows)."""
    out = np.zeros(len(answers))
    for vendor, rows in answers.groupby("vendor", sort=False).indices.items():
        out[rows] = prices_of(prices, str(vendor)).of_kinds(answers["kind"].iloc[rows])
    return out


def _vendor_of_quarantine(quarantine: pd.DataFrame, answers: pd.DataFrame, tasks: pd.DataFrame) -> pd.Series:
    """The vendor of each quarantined record: its annotator's, else its batch folder's (the first
    part of ``source_file``), else the only vendor of the day; '' when none can tell."""
    by_annotator = answers.drop_duplicates("annotator_id").set_index("annotator_id")["vendor"]
    by_batch = tasks.drop_duplicates("batch_id").set_index("batch_id")["vendor"]
    # object dtype throughout: a map through an empty table comes back as floats
    vendor = quarantine["annotator_id"].map(by_annotator).astype(object)
    batch = quarantine["source_file"].astype("string").str.split("/", n=1).str[0]
    vendor = vendor.fillna(batch.map(by_batch).astype(object))
    only = tasks["vendor"].dropna().unique()
    return vendor.fillna(only[0] if len(only) == 1 else "").astype("string")


def _overturned(answers: pd.DataFrame, review_decisions: pd.DataFrame | None) -> pd.DataFrame:
    """The answers behind candidates a reviewer overrode or rejected (latest decision, gold excluded)."""
    if review_decisions is None or not len(review_decisions):
        return answers.iloc[0:0][_KEYS]
    live = review_decisions
    if "superseded" in live:
        live = live[~live["superseded"].fillna(False).astype(bool)]
    if "is_gold" in live:
        live = live[~live["is_gold"].fillna(False).astype(bool)]
    live = live[live["decision"].isin(OVERTURNING)]
    ids = live["annotation_ids"].fillna("").astype(str).str.split().explode()
    return answers[answers["annotation_id"].isin(set(ids.dropna()))][_KEYS]


def _label_figures(answers: pd.DataFrame, quarantine: pd.DataFrame, tasks: pd.DataFrame,
                   review_decisions: pd.DataFrame | None, prices: Prices) -> pd.DataFrame:
    """Counts and cost per (vendor, annotator_id); annotator '' holds the vendor's anonymous records."""
    q = quarantine[quarantine["stage"].isin(VENDOR_STAGES)]
    q = q.assign(vendor=_vendor_of_quarantine(q, answers, tasks), annotator_id=q["annotator_id"].fillna(""))
    accepted = answers.reset_index(drop=True)
    accepted = accepted.assign(price=_label_prices(accepted, prices))
    task_answers = answers.drop_duplicates(["batch_id", "task_id", "annotator_id"])
    out = pd.concat([
        accepted.groupby(_KEYS).agg(n_accepted=("annotation_id", "size"), accepted_cost=("price", "sum")),
        q.groupby(_KEYS).size().rename("n_quarantined"),
        _overturned(answers, review_decisions).groupby(_KEYS).size().rename("n_overturned"),
        task_answers.groupby(_KEYS).agg(n_tasks=("task_id", "size"), work_seconds=("lead_time_s", "sum"),
                                        n_batches=("batch_id", "nunique")),
    ], axis=1).fillna(0)
    flat = out.index.get_level_values("vendor").map(lambda v: prices_of(prices, str(v)).quarantined)
    out["cost"] = out["accepted_cost"] + out["n_quarantined"] * np.asarray(flat, dtype=float)
    return out.drop(columns="accepted_cost")


def _quality_figures(answers: pd.DataFrame, gold: pd.DataFrame, consensus_labels: pd.DataFrame | None
                     ) -> pd.DataFrame:
    """gold_judged, gold_correct, agreement_judged, agreement_agreed per (vendor, annotator_id)."""
    vendor_of = answers.drop_duplicates("annotator_id").set_index("annotator_id")["vendor"]
    elements = gold_answer_outcomes(answers, gold) if len(gold) else pd.DataFrame(columns=["annotator_id", "correct"])
    elements = elements.assign(vendor=elements["annotator_id"].map(vendor_of))
    parts = [elements.groupby(_KEYS)["correct"].agg(gold_judged="size", gold_correct="sum")]
    if consensus_labels is not None and len(consensus_labels):
        agreement = consensus_agreement(answers, consensus_labels)
        parts.append(agreement.groupby(_KEYS)["agrees"].agg(agreement_judged="size", agreement_agreed="sum"))
    return pd.concat(parts, axis=1)


def _ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Every ratio from its counts (NaN where the denominator is 0): rows add up, ratios are redone."""
    def share(num, den):
        den = den.astype(float)
        return (num.astype(float) / den).where(den > 0)
    out = frame.copy()
    out["n_submitted"] = out["n_accepted"] + out["n_quarantined"]
    out["rework_rate"] = share(out["n_quarantined"] + out["n_overturned"], out["n_submitted"])
    out["cost_per_accepted_label"] = share(out["cost"], out["n_accepted"])
    out["work_hours"] = out["work_seconds"] / 3600.0
    out["tasks_per_hour"] = share(out["n_tasks"], out["work_hours"])
    out["gold_accuracy"] = share(out["gold_correct"], out["gold_judged"])
    out["agreement_with_consensus"] = share(out["agreement_agreed"], out["agreement_judged"])
    return out


def vendor_scorecards(answers: pd.DataFrame, quarantine: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame,
                      *, consensus_labels: pd.DataFrame | None = None, review_decisions: pd.DataFrame | None = None,
                      turnaround: pd.DataFrame | None = None, prices: Prices = TaskPrices(),
                      partition_date: str = "") -> pd.DataFrame:
    """VENDOR_SCORECARDS rows: one per vendor, then one per annotator.

    ``answers``: accepted ANNOTATIONS; ``quarantine``: QUARANTINE (stages intake and qa count);
    ``tasks``: VENDOR_TASKS; ``gold``: GOLD_LABELS; ``review_decisions``: the review loop's
    decisions (decision, annotation_ids; None: nothing overturned yet); ``turnaround``:
    :func:`batch_times` (batch_id, turnaround_hours; None: unknown); ``prices``: one
    :class:`TaskPrices` for every vendor, or one per vendor.
    """
    per = _label_figures(answers, quarantine, tasks, review_decisions, prices).join(
        _quality_figures(answers, gold, consensus_labels), how="outer").fillna(0).astype(float)
    for column in ("agreement_judged", "agreement_agreed"):
        if column not in per:
            per[column] = 0
    per = per.reset_index()
    batches = answers.drop_duplicates(["vendor", "annotator_id", "batch_id"])[[*_KEYS, "batch_id"]]
    hours = (turnaround.set_index("batch_id")["turnaround_hours"] if turnaround is not None and len(turnaround)
             else pd.Series(dtype=float))
    batches = batches.assign(turnaround_hours=batches["batch_id"].map(hours).astype(float))
    annotators = per[per["annotator_id"] != ""].merge(
        batches.groupby(_KEYS)["turnaround_hours"].mean().rename("turnaround_hours").reset_index(), on=_KEYS, how="left")
    vendors = per.drop(columns="annotator_id").groupby("vendor").sum(numeric_only=True)
    vendors["n_batches"] = batches.groupby("vendor")["batch_id"].nunique().reindex(vendors.index).fillna(0)
    vendors["turnaround_hours"] = batches.drop_duplicates("batch_id").groupby("vendor")["turnaround_hours"].mean()
    vendors = vendors.reset_index().assign(scope="vendor", annotator_id=pd.NA)
    rows = pd.concat([vendors, annotators.assign(scope="annotator")], ignore_index=True)
    rows = _ratios(rows).assign(partition_date=partition_date)
    rows = rows.sort_values(["scope", "vendor", "annotator_id"], ascending=[False, True, True], na_position="first")
    return VENDOR_SCORECARDS.conform(rows.reset_index(drop=True))


def weekly_trends(daily: pd.DataFrame) -> pd.DataFrame:
    """Vendor rows of several days (VENDOR_SCORECARDS) summed into ISO weeks (``week`` = its Monday),
    every ratio recomputed from the summed counts; turnaround weighted by batches."""
    rows = daily[daily["scope"] == "vendor"]
    if not len(rows):
        return pd.DataFrame(columns=["vendor", "week", "days", *VENDOR_SCORECARDS.column_names[4:]])
    day = pd.to_datetime(rows["partition_date"])
    rows = rows.assign(week=(day - pd.to_timedelta(day.dt.weekday, unit="D")).dt.strftime("%Y-%m-%d"),
                       turnaround_weighted=rows["turnaround_hours"] * rows["n_batches"],
                       timed_batches=rows["n_batches"].where(rows["turnaround_hours"].notna(), 0),
                       work_seconds=rows["work_hours"] * 3600.0,
                       agreement_agreed=rows["agreement_with_consensus"].fillna(0) * rows["agreement_judged"])
    counts = ["n_accepted", "n_quarantined", "n_overturned", "cost", "n_tasks", "work_seconds", "n_batches",
              "gold_judged", "gold_correct", "agreement_judged", "agreement_agreed", "turnaround_weighted",
              "timed_batches"]
    weeks = rows.groupby(["vendor", "week"])[counts].sum()
    weeks["days"] = rows.groupby(["vendor", "week"])["partition_date"].nunique()
    weeks["turnaround_hours"] = (weeks["turnaround_weighted"] / weeks["timed_batches"]).where(weeks["timed_batches"] > 0)
    out = _ratios(weeks.reset_index())
    return out[["vendor", "week", "days", *[c for c in VENDOR_SCORECARDS.column_names[4:] if c in out]]]


PILOT_COLUMNS = ["vendor", "items", "n_accepted", "cost", "cost_per_accepted_label", "rework_rate",
                 "gold_accuracy", "agreement_with_consensus", "tasks_per_hour"]


def pilot_comparison(answers: pd.DataFrame, quarantine: pd.DataFrame, tasks: pd.DataFrame, gold: pd.DataFrame,
                     *, consensus_labels: pd.DataFrame | None = None, prices: Prices = TaskPrices()) -> pd.DataFrame:
    """Quality against cost, vendor beside vendor, on the items more than one vendor labeled
    (gold items included: they are the quality measure). Empty when no item went to two vendors."""
    vendors_per_item = answers.groupby("item_id")["vendor"].nunique()
    shared = set(vendors_per_item[vendors_per_item > 1].index)
    if not shared:
        return pd.DataFrame(columns=PILOT_COLUMNS)
    mine = answers[answers["item_id"].isin(shared)]
    cards = vendor_scorecards(mine, quarantine[quarantine["item_id"].isin(shared)], tasks, gold,
                              consensus_labels=consensus_labels, prices=prices)
    cards = cards[cards["scope"] == "vendor"].set_index("vendor")
    cards["items"] = mine.groupby("vendor")["item_id"].nunique()
    return cards.reset_index()[PILOT_COLUMNS]


def batch_times(layout: DataLayout, vendor: str, batch_ids: list[str]) -> pd.DataFrame:
    """batch_id, sent_at, returned_at (epoch seconds) and turnaround_hours, from the batch tables:
    sent = when our record of the delivered batch was written (``vendor.handoff.record_sent``,
    right after delivery), returned = the newest return file in the batch's inbox folder. A
    batch with no record or no return yet has no turnaround."""
    rows = []
    for batch_id in batch_ids:  # a handful of batches a day: file system stats, not a hot path
        sent_file = layout.handoff_tasks(batch_id)
        returned = [p.stat().st_mtime for p in layout.inbox_batch(vendor, batch_id).glob("*") if p.is_file()]
        sent = sent_file.stat().st_mtime if sent_file.is_file() else np.nan
        rows.append((batch_id, sent, max(returned) if returned else np.nan))
    frame = pd.DataFrame(rows, columns=["batch_id", "sent_at", "returned_at"])
    frame["turnaround_hours"] = ((frame["returned_at"] - frame["sent_at"]) / 3600.0).clip(lower=0)
    return frame

