"""Drift of a production model's predictions, and the relabel campaign it starts.

Where the data comes from (layout under the data root, written by the team that serves the
model, read-only for us):

- ``monitoring/predictions/<YYYY-MM-DD>/*.parquet|*.csv``: the day's prediction log
  (contracts.PREDICTION_LOG): which image, which model version, predicted scene label and
  its confidence. ``image_path`` points at the production image, relative to the data root.
- ``monitoring/reference/<model_version>.parquet|.csv``: the same model's predictions on its
  held-out validation set, written when it was deployed. That is the distribution the model
  was accepted on, so it is what a day is compared with (a rolling window would let slow drift
  through unnoticed).

Two signals per day and model version:

- **label drift**: Population Stability Index of the predicted-label shares,
  ``sum((q - p) * ln(q / p))``, shares floored at ``PSI_FLOOR`` so a class absent on one
  side stays finite. The usual reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant.
- **confidence drift**: two-sample Kolmogorov-Smirnov test of the confidences
  (``scipy.stats.ks_2samp``). With tens of thousands of predictions any shift is
  "significant", so drift needs both p < alpha and an effect size D >= a threshold.

A drifted day becomes a relabel campaign: the day's production images the model is least sure
of, those predicted as a class whose share grew first, up to a budget, are copied into the
ingestion landing folder. From there they take the normal path (anonymization, pre-labels,
vendor, QA, consensus, release), and ``labeling_queue`` puts them first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from annotation_pipeline.atomic_files import write_atomic, write_bytes_atomic, write_parquet_atomic
from annotation_pipeline.contracts import (
    DRIFT_SIGNALS,
    PREDICTION_LOG,
    RELABEL_CAMPAIGN,
    ContractError,
    item_id_for_bytes,
    quarantine_rows,
    require_columns,
)
from annotation_pipeline.layout import DataLayout

STAGE = "monitoring"
PSI_FLOOR = 1e-4
LOG_SUFFIXES = {".parquet", ".csv"}


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2                 # label shares: > 0.2 is the conventional "significant shift"
    ks_statistic: float = 0.1        # confidence: effect size D ...
    ks_alpha: float = 0.01           # ... and significance, both required
    min_predictions: int = 200       # fewer on either side: not judged (too noisy to act on)
    # A class counts as drifted when its own PSI term is at least this and its share grew.
    class_psi: float = 0.02


@dataclass
class PredictionLogs:
    rows: pd.DataFrame          # PREDICTION_LOG, accepted rows
    quarantine: pd.DataFrame    # QUARANTINE, stage "monitoring"
    n_files: int
    n_received: int             # rows read, plus one per unreadable file

    @property
    def n_accepted(self) -> int:
        return len(self.rows)


@dataclass
class DriftAssessment:
    window: str                         # the day judged
    signals: pd.DataFrame               # DRIFT_SIGNALS, one row per (model_version, metric)
    class_shares: pd.DataFrame          # model_version, label, reference_share, current_share, psi_term
    drifted_labels: dict[str, list[str]] = field(default_factory=dict)  # per model version
    notes: list[str] = field(default_factory=list)   # why something was not judged

    @property
    def drifted(self) -> bool:
        return bool(self.signals["drifted"].any()) if len(self.signals) else False


# ---------------------------------------------------------------- reading logs

def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def read_prediction_logs(files: list[Path], root: Path, partition_date: str) -> PredictionLogs:
    """Every file and row either accepted or quarantined with a reason (nothing dropped)."""
    frames, quarantine, received = [], [], 0
    required = list(PREDICTION_LOG.columns)
    for path in sorted(files):
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        try:
            raw = _read_table(path)
        except Exception as exc:  # any unreadable file is one quarantine row, never a crash
            received += 1
            quarantine.append(quarantine_rows(STAGE, partition_date, name, "", "unreadable_log",
                                              f"could not read the prediction log: {type(exc).__name__}: {exc}"))
            continue
        received += len(raw)
        try:
            require_columns(raw, required, f"prediction log {name}")
        except ContractError as missing:  # every row of the file, quarantined with the same sentence
            quarantine.append(quarantine_rows(
                STAGE, partition_date, name, [f"row={i}" for i in range(len(raw))], "log_missing_columns",
                str(missing)))
            continue
        raw = raw[required].reset_index(drop=True)
        confidence = pd.to_numeric(raw["confidence"], errors="coerce").to_numpy(dtype=float)
        reasons = np.full(len(raw), "", dtype=object)
        empty = raw[["logged_at", "model_version", "image_path", "predicted_label"]].isna().any(axis=1).to_numpy()
        reasons[empty] = "missing_field"
        bad_conf = ~empty & ~((confidence >= 0) & (confidence <= 1))   # NaN fails too
        reasons[bad_conf] = "confidence_out_of_range"
        bad = reasons != ""
        if bad.any():
            rows = np.flatnonzero(bad)
            detail = np.where(reasons[bad] == "missing_field",
                              "logged_at, model_version, image_path and predicted_label are required",
                              "confidence " + raw["confidence"].astype(str).to_numpy()[bad] + " is not a number in [0, 1]")
            quarantine.append(quarantine_rows(STAGE, partition_date, name, [f"row={i}" for i in rows],
                                              reasons[bad], detail))
        good = raw.loc[~bad].assign(confidence=confidence[~bad])
        frames.append(PREDICTION_LOG.conform(good.astype({c: "string" for c in required if c != "confidence"})))
    rows = pd.concat(frames, ignore_index=True) if frames else PREDICTION_LOG.empty()
    q = pd.concat(quarantine, ignore_index=True) if quarantine else quarantine_rows(STAGE, partition_date, [], [], [], [])
    return PredictionLogs(rows, q, len(files), received)


def log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in LOG_SUFFIXES) if folder.is_dir() else []


def read_day(root: Path, partition_date: str) -> PredictionLogs:
    return read_prediction_logs(log_files(DataLayout(root).predictions(partition_date)), root, partition_date)


def read_reference(root: Path, model_version: str) -> PredictionLogs | None:
    """The model's validation-set predictions, or None when the serving team wrote none."""
    for suffix in (".parquet", ".csv"):
        path = DataLayout(root).reference_log(model_version, suffix)
        if path.exists():
            return read_prediction_logs([path], root, "reference")
    return None


# ---------------------------------------------------------------- the signals

def label_shares(labels: pd.Series) -> pd.Series:
    return labels.value_counts(normalize=True, sort=False)


def population_stability(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Per label: reference and current share and its PSI term; their sum is the PSI.

    ``reference`` and ``current`` are label shares (each sums to 1) indexed by label.
    """
    labels = reference.index.union(current.index)
    p = reference.reindex(labels, fill_value=0.0).to_numpy(dtype=float)
    q = current.reindex(labels, fill_value=0.0).to_numpy(dtype=float)
    pf, qf = np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)
    return pd.DataFrame({"label": labels.astype(str), "reference_share": p, "current_share": q,
                         "psi_term": (qf - pf) * np.log(qf / pf)})


def assess_drift(current: pd.DataFrame, references: dict[str, pd.DataFrame | None], window: str,
                 thresholds: DriftThresholds = DriftThresholds()) -> DriftAssessment:
    """Compare one day's predictions with each model version's reference predictions."""
    signal_rows, share_frames, drifted_labels, notes = [], [], {}, []
    for version, day in current.groupby("model_version", sort=True):
        version = str(version)
        reference = references.get(version)
        if reference is None or reference.empty:
            notes.append(f"model {version}: no reference predictions (its validation-set predictions, logged by the serving team); not judged")
            continue
        if len(day) < thresholds.min_predictions or len(reference) < thresholds.min_predictions:
            notes.append(f"model {version}: {len(day)} predictions today and {len(reference)} in the reference; "
                         f"at least {thresholds.min_predictions} each are needed to judge drift")
            continue
        shares = population_stability(label_shares(reference["predicted_label"]), label_shares(day["predicted_label"]))
        psi = float(shares["psi_term"].sum())
        ks = stats.ks_2samp(reference["confidence"].to_numpy(dtype=float), day["confidence"].to_numpy(dtype=float))
        grew = shares[(shares["psi_term"] >= thresholds.class_psi) & (shares["current_share"] > shares["reference_share"])]
        drifted_labels[version] = grew.sort_values("psi_term", ascending=False)["label"].tolist() \
            if psi > thresholds.psi else []
        common = {"window": window, "model_version": version, "n_reference": len(reference), "n_current": len(day)}
        signal_rows += [
            {**common, "metric": "label_psi", "value": psi, "threshold": thresholds.psi, "p_value": np.nan,
             "drifted": psi > thresholds.psi},
            {**common, "metric": "confidence_ks", "value": float(ks.statistic), "threshold": thresholds.ks_statistic,
             "p_value": float(ks.pvalue),
             "drifted": bool(ks.statistic >= thresholds.ks_statistic and ks.pvalue < thresholds.ks_alpha)},
        ]
        share_frames.append(shares.assign(model_version=version))
    signals = DRIFT_SIGNALS.conform(pd.DataFrame(signal_rows)) if signal_rows else DRIFT_SIGNALS.empty()
    shares = pd.concat(share_frames, ignore_index=True) if share_frames else \
        pd.DataFrame(columns=["label", "reference_share", "current_share", "psi_term", "model_version"])
    return DriftAssessment(window, signals, shares, drifted_labels, notes)


def assess_day(root: Path, partition_date: str, thresholds: DriftThresholds = DriftThresholds()
               ) -> tuple[PredictionLogs, DriftAssessment]:
    logs = read_day(root, partition_date)
    references = {v: read_reference(root, v) for v in sorted(set(logs.rows["model_version"].astype(str)))}
    assessment = assess_drift(logs.rows, {v: r.rows if r else None for v, r in references.items()},
                              partition_date, thresholds)
    for version, reference in references.items():  # the reference's bad rows are said, not dropped
        if reference is not None and len(reference.quarantine):
            counts = reference.quarantine["reason"].value_counts().to_dict()
            assessment.notes.append(f"model {version}: {len(reference.quarantine)} reference row(s) left out: {counts}")
    return logs, assessment


def campaign_id_for(window: str) -> str:
    """One campaign per drifted day: the sensor's run key, so a day never starts two."""
    return f"drift-{window}"


def window_of_campaign(campaign_id: str) -> str:
    if not campaign_id.startswith("drift-") or len(campaign_id) != len("drift-YYYY-MM-DD"):
        raise ValueError(f"not a drift campaign id: {campaign_id!r} (expected drift-YYYY-MM-DD)")
    return campaign_id.removeprefix("drift-")


# ---------------------------------------------------------------- the campaign

@dataclass
class Campaign:
    campaign_id: str
    items: pd.DataFrame          # RELABEL_CAMPAIGN, what was landed
    quarantine: pd.DataFrame     # selected predictions whose image could not be landed
    n_candidates: int            # distinct production images of the window
    landing_dir: Path
    manifest_path: Path


def select_for_relabeling(predictions: pd.DataFrame, drifted_labels: dict[str, list[str]], budget: int
                          ) -> pd.DataFrame:
    """Distinct images, most useful first: predicted as a class whose share grew, then least confident.

    Columns: image_path, model_version, predicted_label, confidence, reason, priority.
    """
    latest = predictions.sort_values("logged_at", kind="stable").drop_duplicates("image_path", keep="last")
    in_grown = np.zeros(len(latest), dtype=bool)
    for version, labels in drifted_labels.items():  # one per model version
        in_grown |= (latest["model_version"] == version).to_numpy() & latest["predicted_label"].isin(labels).to_numpy()
    ranked = latest.assign(in_grown=in_grown).sort_values(["in_grown", "confidence", "image_path"],
                                                          ascending=[False, True, True], kind="stable")
    picked = ranked.head(max(budget, 0))
    # the confidence has its own column: the reason stays a small set of values to count by
    reason = np.where(picked["in_grown"], "predicted class grew: " + picked["predicted_label"].astype(str),
                      "low confidence")
    return pd.DataFrame({"image_path": picked["image_path"].astype(str).to_numpy(),
                         "model_version": picked["model_version"].astype(str).to_numpy(),
                         "predicted_label": picked["predicted_label"].astype(str).to_numpy(),
                         "confidence": picked["confidence"].to_numpy(dtype=float),
                         "reason": reason, "priority": np.arange(1, len(picked) + 1)})


def landing_date_for(root: Path, campaign_id: str, today: str) -> str:
    """The day a campaign lands its images: the day after the drifted one, or today if that
    has passed (a partition already processed would never pick them up). A rerun keeps the
    date its first run chose, so it never lands the same images in a second folder."""
    manifest = DataLayout(root).campaign_manifest(campaign_id)
    if manifest.exists():
        return json.loads(manifest.read_text())["landing_date"]
    next_day = (pd.Timestamp(window_of_campaign(campaign_id)) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    return max(next_day, today)


def write_log_quarantine(root: Path, partition_date: str, rows: pd.DataFrame) -> Path:
    """Quarantined prediction-log rows of a day, kept apart from the annotation quarantine
    (they are the serving team's data, not the labeling program's); replaced on a rerun."""
    path = DataLayout(root).monitoring_quarantine(partition_date)
    return write_parquet_atomic(rows, path)


def run_campaign(root: Path, campaign_id: str, budget: int, today: str,
                 thresholds: DriftThresholds = DriftThresholds()) -> Campaign:
    """Select the drifted day's images and copy them into the ingestion landing folder.

    Rerunning a campaign rewrites the same files with the same bytes into the same folder
    (landing names carry the campaign id and the content hash), so it lands nothing twice.
    Images that cannot be read are quarantined, not skipped silently.
    """
    window = window_of_campaign(campaign_id)
    landing_date = landing_date_for(root, campaign_id, today)
    logs, assessment = assess_day(root, window, thresholds)
    if not assessment.drifted:
        raise ContractError(f"{campaign_id}: the predictions of {window} show no drift any more "
                            f"({'; '.join(assessment.notes) or 'every signal below its threshold'}); "
                            "nothing to relabel")
    selection = select_for_relabeling(logs.rows, assessment.drifted_labels, budget)
    landing = DataLayout(root).landing(landing_date)
    landed, missing = [], []
    for row in selection.itertuples(index=False):  # one file copy per selected image (budget-sized)
        source = (root / row.image_path).resolve()
        if not source.is_relative_to(root) or not source.is_file():
            missing.append(row)
            continue
        content = source.read_bytes()
        item_id = item_id_for_bytes(content)
        name = f"{campaign_id}_{item_id}{source.suffix.lower()}"
        if not (landing / name).exists():
            write_atomic(landing / name, lambda tmp, source=source: shutil.copyfile(source, tmp))
        landed.append({**row._asdict(), "campaign_id": campaign_id, "item_id": item_id,
                       "landing_file": DataLayout(root).relative(landing / name)})
    items = RELABEL_CAMPAIGN.conform(pd.DataFrame(landed)) if landed else RELABEL_CAMPAIGN.empty()
    quarantine = quarantine_rows(
        STAGE, landing_date, [m.image_path for m in missing], [f"{campaign_id} priority={m.priority}" for m in missing],
        "campaign_image_missing",
        [f"production image {m.image_path} is not a readable file under the data root" for m in missing])
    layout = DataLayout(root)
    items_path, manifest_path = layout.campaign_items(campaign_id), layout.campaign_manifest(campaign_id)
    write_parquet_atomic(items, items_path)
    manifest = {"campaign_id": campaign_id, "window": window, "landing_date": landing_date, "budget": budget,
                "n_candidates": int(logs.rows["image_path"].nunique()), "n_landed": len(items),
                "n_missing": len(missing), "drifted_labels": assessment.drifted_labels,
                "signals": json.loads(assessment.signals.to_json(orient="records")),
                "items_sha256": hashlib.sha256(items_path.read_bytes()).hexdigest()}
    write_bytes_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    return Campaign(campaign_id, items, quarantine, manifest["n_candidates"], landing, manifest_path)


def campaign_items(root: Path) -> pd.DataFrame:
    """Every campaign's landed items (campaign_id, item_id, reason, priority): labeling_queue's priority list."""
    layout = DataLayout(root)
    folders = sorted(p for p in layout.campaigns.glob("*") if p.is_dir()) if layout.campaigns.is_dir() else []
    frames = [pd.read_parquet(path) for f in folders if (path := layout.campaign_items(f.name)).is_file()]
    frames = [f for f in frames if len(f)]
    return RELABEL_CAMPAIGN.conform(pd.concat(frames, ignore_index=True)) if frames else RELABEL_CAMPAIGN.empty()


def summary(assessment: DriftAssessment) -> dict[str, Any]:
    """Plain numbers for metadata and sensor messages."""
    by_metric = {f"{r.model_version}:{r.metric}": round(float(r.value), 4) for r in assessment.signals.itertuples()}
    return {"drifted": assessment.drifted, "signals": by_metric, "drifted_labels": assessment.drifted_labels,
            "notes": assessment.notes}
