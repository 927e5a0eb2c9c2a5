"""Review decisions coming back: reviewers' files read with the same care as vendor returns.

A decision file is a JSON list of decisions, one object each::

    [{"task_id": "rv-0123456789ab", "reviewer_id": "rev-01", "decision": "override",
      "value": "fog", "reason": "the horizon is gone", "decided_at": "2026-11-21T09:14:00Z"}]

- ``decision``: ``confirm`` (the candidate is right), ``override`` (``value`` is the right
  class, of the same geometry as the candidate) or ``reject`` (the candidate is wrong and
  has no right class: the object is not there, or the scene cannot be told);
- ``reason``: free text, at most ``MAX_REASON`` characters. Reviewer text can carry personal
  data ("checked with Dr. Weber"), so it is scrubbed by the anonymization text detectors
  (e-mail, phone, IBAN, card, national id, IP, names after a cue) before it is stored;
- ``decided_at``: ISO 8601 (stored in UTC), not after the time the file is read: a decision
  stamped more than ``CLOCK_SKEW`` later than that is quarantined (``future_timestamp``). A
  reviewer's clock may run a little fast; a decision from the future is a wrong clock or a
  forged file, and the latest decision per task wins, so a future stamp would win every tie.

Every entry of the returns folder ends ``accepted``, ``quarantined`` (the whole file is
unusable: not a regular file, not UTF-8 JSON, not a list) or ``duplicate_file`` (the same
bytes as another file of the day). Each decision of an accepted file is accepted or
quarantined with a reason (stage ``review``); a file that cannot be read counts as one
record. Counts reconcile: ``received = accepted + quarantined``. Nothing raises: a file that
breaks the reader is quarantined as ``unreadable_decisions`` and the other files go on.

Several decisions on one task are all kept; the latest (by ``decided_at``, then id) is the one
the release applies, the others are marked ``superseded``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.text import NameFinder, scan_texts
from annotation_pipeline.contracts import QUARANTINE, REVIEW_DECISIONS, REVIEW_TASKS, REVIEWER_ACCURACY, quarantine_rows
from annotation_pipeline.ontology import Ontology
from annotation_pipeline.vendor.export_format import MAX_TEXT, FileRejected, decode_json, preview, text_problem

STAGE = "review"
DECISIONS = ("confirm", "override", "reject")
MAX_REASON = 1000             # characters: a few sentences; a longer "reason" is a pasted document
MAX_DECISION_FILE_BYTES = 16 * 1024 * 1024   # a day's decisions are kilobytes
CLOCK_SKEW = timedelta(minutes=5)  # a reviewer's clock a little ahead of ours is not a problem
FIELDS = ("task_id", "reviewer_id", "decision", "value", "reason", "decided_at")
FILE_STATUSES = ("accepted", "quarantined", "duplicate_file")


@dataclass
class DecisionIntake:
    decisions: pd.DataFrame    # REVIEW_DECISIONS
    quarantine: pd.DataFrame   # QUARANTINE rows, stage "review"
    files: pd.DataFrame        # source_file, source_sha256, status, n_received, n_accepted, n_quarantined, reason
    redactions: int            # personal data replaced in reasons

    def counts(self) -> dict[str, int]:
        status = self.files["status"].value_counts()
        return {"received": int(self.files["n_received"].sum()), "accepted": len(self.decisions),
                "quarantined": len(self.quarantine), "files_received": len(self.files),
                **{f"files_{s.removesuffix('_file')}": int(status.get(s, 0)) for s in FILE_STATUSES}}

    @property
    def reconciles(self) -> bool:
        c = self.counts()
        return (c["received"] == c["accepted"] + c["quarantined"]
                and c["files_received"] == c["files_accepted"] + c["files_quarantined"] + c["files_duplicate"])


def decision_files(returns: Path) -> list[Path]:
    """Every entry of the returns folder (links and odd entries too: they are judged, not skipped),
    except hidden names, which are files still being written (``atomic_files``)."""
    if not returns.is_dir():
        return []
    with os.scandir(returns) as scan:
        names = sorted((e.name for e in scan if not e.name.startswith(".")), key=os.fsencode)
    return [returns / name for name in names]


def _read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file, never through a link; FileRejected naming what it is instead."""
    shown = os.fsencode(path.name).decode("utf-8", "backslashreplace")
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise FileRejected("unreadable_file", f"{shown!r}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise FileRejected("symlink", f"{shown!r} is a link; links are never followed: put the file itself "
                                      "in the returns folder")
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise FileRejected("not_a_file", f"{shown!r} is {what}; put decision files directly in the returns folder")
    if info.st_size > MAX_DECISION_FILE_BYTES:
        raise FileRejected("file_too_large", f"{shown!r} is {info.st_size} bytes, over the "
                                             f"{MAX_DECISION_FILE_BYTES} byte limit of a decision file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRejected("unreadable_file", f"{shown!r}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FileRejected("not_a_file", f"{shown!r} is not a regular file")
        raw = handle.read(MAX_DECISION_FILE_BYTES + 1)
    if len(raw) > MAX_DECISION_FILE_BYTES:
        raise FileRejected("file_too_large", f"{shown!r} is over the {MAX_DECISION_FILE_BYTES} byte limit")
    return raw


def _field(row: dict, name: str) -> tuple[str | None, str, str]:
    """(value, problem code, detail) of one text field of a decision object; code '' when usable."""
    value = row.get(name)
    if value is None:
        return None, "", ""
    if not isinstance(value, str):
        return None, "invalid_field", f"{name} must be text, got {preview(value)}"
    if name == "reason" and len(value) > MAX_REASON:
        return None, "reason_too_long", f"the reason is {len(value)} characters long (at most {MAX_REASON})"
    problem = text_problem(value[:MAX_TEXT] if name == "reason" else value)
    return (value.strip(), "", "") if not problem else (None, "invalid_field", f"{name} {problem}")


def _parse_rows(document: Any, source_file: str, sha256: str) -> pd.DataFrame:
    """One row per received decision: its text fields and the first problem found in its shape."""
    if not isinstance(document, list):
        raise FileRejected("unknown_format", f"expected a JSON list of decisions, got a {type(document).__name__}")
    rows = []
    for position, entry in enumerate(document):  # shape checks of untrusted JSON, a few dozen rows
        row = {"record_ref": f"decision {position}", "source_file": source_file, "source_sha256": sha256,
               **dict.fromkeys(FIELDS), "shape_reason": "", "shape_detail": ""}
        if not isinstance(entry, dict):
            row.update(shape_reason="not_an_object", shape_detail=f"expected a decision object, got {preview(entry)}")
        else:
            for name in FIELDS:
                row[name], code, detail = _field(entry, name)
                if code and not row["shape_reason"]:
                    row.update(shape_reason=code, shape_detail=detail)
        rows.append(row)
    return pd.DataFrame(rows, columns=["record_ref", "source_file", "source_sha256", *FIELDS,
                                       "shape_reason", "shape_detail"])


def _read_file(path: Path, returns: Path, seen: set[str]) -> tuple[dict, pd.DataFrame]:
    shown = os.fsencode(os.path.relpath(path, returns)).decode("utf-8", "backslashreplace")
    report = {"source_file": shown, "source_sha256": None, "status": "accepted", "n_received": 0,
              "reason": "", "detail": ""}
    try:
        raw = _read_regular_file(path)
        digest = hashlib.sha256(raw).hexdigest()
        report["source_sha256"] = digest
        if digest in seen:
            report.update(status="duplicate_file", reason="duplicate_file",
                          detail=f"the same bytes (sha256 {digest[:12]}…) as another decision file; read once")
            return report, _parse_rows([], shown, digest)
        rows = _parse_rows(decode_json(raw), shown, digest)
        seen.add(digest)
    except FileRejected as rejected:
        report.update(status="quarantined", reason=rejected.reason, detail=rejected.detail)
        return report, pd.DataFrame()
    except Exception as exc:  # noqa: BLE001 - one file never stops the day's other decisions
        report.update(status="quarantined", reason="unreadable_decisions",
                      detail=f"the file could not be read ({type(exc).__name__}: {preview(str(exc))})")
        return report, pd.DataFrame()
    report["n_received"] = len(rows)
    return report, rows


def objects(values: pd.Series) -> np.ndarray:
    """A column as a plain object array, missing values (NaN, NA) as None: safe to compare with ==."""
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


def _allowed_values(ontology: Ontology) -> dict[str, set[str]]:
    by_kind = {"choice": set(ontology.scene_classes)}
    for name, geometry in ontology.object_geometry.items():
        by_kind.setdefault(geometry, set()).add(name)
    return by_kind


def _row_problems(rows: pd.DataFrame, tasks: pd.DataFrame, ontology: Ontology,
                  now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(reason code, detail) per row; reason '' when the decision is accepted. First problem wins."""
    task = tasks.set_index("review_task_id").reindex(rows["task_id"])
    kind, candidate = objects(task["kind"]), objects(task["label"])
    decision, value = objects(rows["decision"]), objects(rows["value"])
    allowed = _allowed_values(ontology)
    value_ok = np.array([v in allowed.get(k, ()) for k, v in zip(kind, value)], bool)
    has_value = np.array([v is not None and v != "" for v in value], bool)
    when = pd.to_datetime(rows["decided_at"], utc=True, errors="coerce", format="ISO8601")
    shape = objects(rows["shape_reason"])
    checks = [
        (shape != "", shape, rows["shape_detail"].to_numpy(dtype=object)),
        (rows["reviewer_id"].fillna("").to_numpy() == "", "missing_reviewer", "no reviewer_id: who decided?"),
        (pd.isna(kind), "unknown_task", "task_id " + rows["task_id"].fillna("(none)").astype(str)
         + " is not a review task of this day"),
        (~np.isin(decision, DECISIONS), "unknown_decision",
         "decision " + rows["decision"].fillna("(none)").astype(str) + f" is not one of {', '.join(DECISIONS)}"),
        ((decision == "override") & ~value_ok, "invalid_value",
         "an override needs a value of the candidate's kind; got " + rows["value"].fillna("(none)").astype(str)),
        ((decision != "override") & has_value & (value != candidate), "unexpected_value",
         "a " + rows["decision"].fillna("").astype(str) + " carries no value; to change the label, override"),
        (when.isna().to_numpy(), "invalid_timestamp",
         "decided_at " + rows["decided_at"].fillna("(none)").astype(str) + " is not an ISO 8601 time"),
        ((when > pd.Timestamp(now + CLOCK_SKEW)).to_numpy(bool), "future_timestamp",
         "decided_at " + rows["decided_at"].fillna("(none)").astype(str) + " is after the decision was read ("
         + pd.Timestamp(now).strftime("%Y-%m-%dT%H:%M:%SZ")
         + f", {int(CLOCK_SKEW.total_seconds() // 60)} min clock skew allowed); check the reviewer's clock"),
    ]
    reason = np.full(len(rows), "", dtype=object)
    detail = np.full(len(rows), "", dtype=object)
    for condition, code, text in reversed(checks):  # the first check in the list wins
        condition = np.asarray(condition, bool)
        reason[condition] = code if isinstance(code, str) else np.asarray(code, dtype=object)[condition]
        detail[condition] = text if isinstance(text, str) else np.asarray(text, dtype=object)[condition]
    return reason, detail


def _decision_ids(frame: pd.DataFrame) -> pd.Series:
    columns = [frame[c].tolist() for c in ("task_id", "reviewer_id", "decided_at", "decision", "value", "reason")]
    keys = ["\x1f".join("" if v is None or pd.isna(v) else str(v) for v in values) for values in zip(*columns)]
    return pd.Series([hashlib.sha256(k.encode()).hexdigest()[:16] for k in keys], index=frame.index, dtype=object)


def _accepted(rows: pd.DataFrame, tasks: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Accepted rows as REVIEW_DECISIONS (reasons scrubbed, latest per task marked), redactions made."""
    reasons, hits = scan_texts(rows["reason"].fillna(""), pd.Series(True, index=rows.index), NameFinder())
    rows = rows.assign(reason=reasons.astype(str),
                       decided_at=pd.to_datetime(rows["decided_at"], utc=True, format="ISO8601")
                       .dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    rows = rows.assign(decision_id=_decision_ids(rows).to_numpy())
    task = tasks.set_index("review_task_id").reindex(rows["task_id"])
    decision, value = objects(rows["decision"]), objects(rows["value"])
    final = np.where(decision == "confirm", objects(task["label"]), np.where(decision == "override", value, None))
    gold = task["is_gold"].fillna(False).to_numpy(bool)
    correct = pd.array(np.where(gold, final == objects(task["gold_label"]), False), dtype="boolean")
    correct[~gold] = pd.NA
    out = pd.DataFrame({
        "decision_id": rows["decision_id"].to_numpy(), "review_task_id": rows["task_id"].to_numpy(),
        "item_id": task["item_id"].to_numpy(), "kind": task["kind"].to_numpy(),
        "candidate_label": task["label"].to_numpy(), "decision": decision,
        "new_label": np.where(decision == "override", value, None),
        "final_label": final,
        **{c: task[c].to_numpy(float) for c in ("x_min", "y_min", "x_max", "y_max", "confidence")},
        "n_assigned": task["n_assigned"].to_numpy(), "annotation_ids": task["annotation_ids"].to_numpy(),
        "reviewer_id": rows["reviewer_id"].to_numpy(), "decided_at": rows["decided_at"].to_numpy(),
        "reason": rows["reason"].to_numpy(), "is_gold": gold, "correct": correct,
        "source_file": rows["source_file"].to_numpy(), "source_sha256": rows["source_sha256"].to_numpy(),
    })
    out = out.sort_values(["review_task_id", "decided_at", "decision_id"], kind="stable").reset_index(drop=True)
    out["superseded"] = out["review_task_id"].duplicated(keep="last").to_numpy()
    return REVIEW_DECISIONS.conform(out), int(hits["count"].sum()) if len(hits) else 0


def read_decisions(files: list[Path], returns: Path, tasks: pd.DataFrame, ontology: Ontology, *,
                   partition_date: str, now: datetime | None = None) -> DecisionIntake:
    """Judge every decision file of a day against the day's review tasks (REVIEW_TASKS).

    ``now`` (timezone-aware; default: the clock) is when the decisions are read: none may be
    stamped later than that, beyond ``CLOCK_SKEW``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    REVIEW_TASKS.validate(tasks)
    seen: set[str] = set()
    reports, parts = [], []
    for path in files:
        report, rows = _read_file(Path(path), Path(returns), seen)
        reports.append(report)
        parts.append(rows)
    files_report = pd.DataFrame(reports, columns=["source_file", "source_sha256", "status", "n_received",
                                                  "reason", "detail"])
    rows = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) \
        else _parse_rows([], "", "")
    reason, detail = _row_problems(rows, tasks, ontology, now)
    ok = reason == ""
    duplicate = np.zeros(len(rows), bool)
    duplicate[ok] = _decision_ids(rows[ok]).duplicated().to_numpy()  # an accepted decision received again
    reason[duplicate], detail[duplicate] = "duplicate_decision", "the same decision was already received"
    decisions, redactions = _accepted(rows[reason == ""], tasks)
    bad = rows[reason != ""]
    item_of = tasks.set_index("review_task_id")["item_id"]
    quarantine = quarantine_rows(STAGE, partition_date, bad["source_file"], bad["record_ref"], reason[reason != ""],
                                 detail[reason != ""], item_id=item_of.reindex(bad["task_id"]).to_numpy(),
                                 annotator_id=bad["reviewer_id"].to_numpy()) if len(bad) else QUARANTINE.empty()
    whole = files_report[files_report["status"] == "quarantined"]
    if len(whole):
        quarantine = pd.concat([quarantine, quarantine_rows(STAGE, partition_date, whole["source_file"], "",
                                                            whole["reason"], whole["detail"])], ignore_index=True)
    per_file = rows.assign(bad=reason != "").groupby("source_file")["bad"].agg(["size", "sum"])
    files_report["n_quarantined"] = files_report["source_file"].map(per_file["sum"]).fillna(0).astype("int64")
    files_report.loc[files_report["status"] == "quarantined", ["n_received", "n_quarantined"]] = 1
    files_report["n_accepted"] = files_report["n_received"] - files_report["n_quarantined"]
    files_report.loc[files_report["status"] == "duplicate_file", ["n_received", "n_accepted", "n_quarantined"]] = 0
    return DecisionIntake(decisions, QUARANTINE.conform(quarantine), files_report, redactions)


def reviewer_accuracy(decisions: pd.DataFrame) -> pd.DataFrame:
    """REVIEWER_ACCURACY: each reviewer's latest decision per gold task, judged against the known answer."""
    reviewers = pd.Index(decisions["reviewer_id"].drop_duplicates().sort_values(), name="reviewer_id")
    latest = decisions.sort_values(["decided_at", "decision_id"], kind="stable").drop_duplicates(
        ["reviewer_id", "review_task_id"], keep="last")
    gold = latest[latest["is_gold"].to_numpy(bool)]
    right = gold["correct"].fillna(False).to_numpy(bool)
    n_gold = gold.groupby("reviewer_id").size().reindex(reviewers, fill_value=0)
    n_correct = pd.Series(right, index=gold.index).groupby(gold["reviewer_id"]).sum().reindex(reviewers, fill_value=0)
    frame = pd.DataFrame({"reviewer_id": reviewers, "n_gold": n_gold.to_numpy().astype("int64"),
                          "n_correct": n_correct.to_numpy().astype("int64")})
    frame["accuracy"] = np.where(frame["n_gold"] > 0, frame["n_correct"] / frame["n_gold"].clip(lower=1), np.nan)
    return REVIEWER_ACCURACY.conform(frame)
