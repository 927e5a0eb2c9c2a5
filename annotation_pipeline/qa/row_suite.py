"""The row-level suite: rules kept as code, validated by Great Expectations, failing rows quarantined.

Schema, ontology membership, geometry, duplicates, partial answers. A failing row is
quarantined with the reason of the first rule it fails (suite order goes from "cannot be
read" to "looks wrong") and a sentence naming the others; the rest is accepted and the batch
goes on. The row indices to quarantine come from pandas masks built from the same rule
specification as the expectation, and each outcome records both counts, so a disagreement
between GX and our masks cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
import shapely

from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE, ContractError, quarantine_rows
from annotation_pipeline.ontology import ontology_dict, ontology_labels
from annotation_pipeline.qa.check_columns import derive_check_columns, missing_required
from annotation_pipeline.qa.gx_bridge import GXRunner, expectation_outcome
from annotation_pipeline.qa.outcomes import STAGE, CheckOutcome, ExpectationOutcome, QAThresholds, plain

E = gx.expectations


@dataclass(frozen=True)
class RowRule:
    """One row-level expectation, specified once for both GX and the pandas mask."""
    reason: str
    column: str
    test: str                          # "between", "in_set" or "a_at_least_b"
    description: str
    detail: Callable[[pd.DataFrame], pd.Series]   # failing rows of the checks frame -> sentence
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    value_set: tuple = ()
    column_b: str = ""
    # context the detail sentence needs beyond the checks and identifying columns:
    # "missing_fields", "first_source_file" or "polygon_reason" (computed for failing rows only)
    context: tuple[str, ...] = ()

    def expectation(self) -> Any:
        meta = {"reason": self.reason}
        if self.test == "between":
            return E.ExpectColumnValuesToBeBetween(
                column=self.column, min_value=self.min_value, max_value=self.max_value,
                strict_min=self.strict_min, description=self.description, meta=meta)
        if self.test == "in_set":
            return E.ExpectColumnValuesToBeInSet(column=self.column, value_set=list(self.value_set),
                                                 description=self.description, meta=meta)
        return E.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=self.column, column_B=self.column_b, or_equal=True,
            ignore_row_if="either_value_is_missing", description=self.description, meta=meta)

    def failing(self, checks: pd.DataFrame) -> np.ndarray:
        """Same semantics as the expectation: missing values are not judged."""
        values = checks[self.column]
        if self.test == "in_set" and values.dtype == bool and set(self.value_set) <= {True, False}:
            allowed = set(self.value_set)  # a flag column: compare, no hash-table lookup
            v = values.to_numpy()
            return np.zeros(len(v), dtype=bool) if allowed == {True, False} else v != allowed.pop()
        if self.test == "in_set":
            return (values.notna() & ~values.isin(self.value_set)).to_numpy(dtype=bool)
        v = values.to_numpy(dtype=float, na_value=np.nan)
        if self.test == "a_at_least_b":
            b = checks[self.column_b].to_numpy(dtype=float, na_value=np.nan)
            return ~np.isnan(v) & ~np.isnan(b) & ~(v >= b)
        ok = np.ones(len(v), dtype=bool)
        if self.min_value is not None:
            ok &= (v > self.min_value) if self.strict_min else (v >= self.min_value)
        if self.max_value is not None:
            ok &= v <= self.max_value
        return ~np.isnan(v) & ~ok


def _fmt(values: pd.Series, digits: int = 1) -> pd.Series:
    text = values.astype(float).round(digits).astype(str)
    return text.str.removesuffix(".0") if digits == 0 else text  # "4 px minimum", not "4.0"


def suite_version_tag(ontology: Any) -> str:
    raw = ontology_dict(ontology)
    return f"{raw.get('name', 'ontology')}_v{raw['version']}".replace(".", "_")


def row_rules(ontology: Any, thresholds: QAThresholds) -> list[RowRule]:
    """The row-level suite as code; order matters: a row's reason is its first failure."""
    labels = ontology_labels(ontology)
    allowed = tuple(f"{k}:{label}" for k, names in labels.items() for label in names)
    tol = thresholds.bounds_tolerance_px
    return [
        RowRule("missing_required_field", "n_missing_required", "between",
                "every required field of the annotations contract is present",
                lambda c: "required field(s) empty: " + c["missing_fields"].astype(str),
                min_value=0, max_value=0, context=("missing_fields",)),
        RowRule("unknown_kind", "kind", "in_set", "kind is choice, box or polygon",
                lambda c: "kind " + c["kind"].astype(str) + " is not choice, box or polygon",
                value_set=("choice", "box", "polygon")),
        RowRule("label_not_in_ontology", "kind_label", "in_set",
                f"label belongs to the ontology for its kind ({suite_version_tag(ontology)})",
                lambda c: "label '" + c["label"].astype(str) + "' is not an ontology class for a "
                + c["kind"].astype(str) + "; allowed: " + ", ".join(allowed), value_set=allowed),
        RowRule("unknown_task", "task_known", "in_set", "task id belongs to the batch handoff",
                lambda c: "task " + c["task_id"].astype(str) + " was not sent in batch "
                + c["batch_id"].astype(str), value_set=(True,)),
        RowRule("image_size_mismatch", "image_size_error_px", "between",
                "image size the annotator saw matches the handoff",
                lambda c: "image size differs from the handoff by " + _fmt(c["image_size_error_px"])
                + " px", max_value=thresholds.image_size_tolerance_px),
        RowRule("duplicate_answer", "is_duplicate_answer", "in_set",
                "one answer per annotator per task (first submission kept)",
                lambda c: "annotator " + c["annotator_id"].astype(str) + " already answered task "
                + c["task_id"].astype(str) + " in " + c["first_source_file"].astype(str),
                value_set=(False,), context=("first_source_file",)),
        RowRule("missing_scene_choice", "answer_has_scene", "in_set",
                "every answer carries its scene choice (no partial answers)",
                lambda c: "partial answer: annotator " + c["annotator_id"].astype(str)
                + " gave no scene choice for task " + c["task_id"].astype(str), value_set=(True,)),
        RowRule("missing_coordinates", "n_nonfinite_coords", "between",
                "boxes and polygons have finite coordinates",
                lambda c: "coordinates missing, NaN or infinite (" + c["n_nonfinite_coords"].astype(int).astype(str)
                + " of 4 box edges)", min_value=0, max_value=0),
        RowRule("swapped_coordinates", "min_signed_extent_px", "between",
                "x_max >= x_min and y_max >= y_min (no negative width or height)",
                lambda c: "negative extent " + _fmt(c["min_signed_extent_px"])
                + " px: corners swapped or width/height negative", min_value=0),
        RowRule("invalid_polygon", "polygon_is_valid", "in_set",
                "polygons are valid (shapely is_valid: no self-intersection)",
                lambda c: "invalid polygon: " + c["polygon_reason"].astype(str), value_set=(True,),
                context=("polygon_reason",)),
        RowRule("zero_area", "area_px", "between", "boxes and polygons have positive area",
                lambda c: "area is " + _fmt(c["area_px"], 3) + " px², expected > 0",
                min_value=0, strict_min=True),
        RowRule("outside_image", "outside_image_px", "between",
                f"geometry inside the image within {tol} px",
                lambda c: "extends " + _fmt(c["outside_image_px"]) + " px outside the "
                + _fmt(c["image_width"], 0) + "×" + _fmt(c["image_height"], 0)
                + f" image (tolerance {tol} px)", max_value=tol),
        RowRule("below_min_size", "min_side_px", "a_at_least_b",
                "shortest side at least the class minimum size (ontology min_size_px)",
                lambda c: "shortest side " + _fmt(c["min_side_px"]) + " px is below the "
                + _fmt(c["min_size_px"], 0) + " px minimum", column_b="min_size_px"),
        RowRule("aspect_ratio_too_large", "max_aspect_ratio", "a_at_least_b",
                "aspect ratio within the class limit (ontology max_aspect_ratio)",
                lambda c: "aspect ratio " + _fmt(c["aspect_ratio"]) + ":1 exceeds "
                + _fmt(c["max_aspect_ratio"], 0) + ":1", column_b="aspect_ratio"),
        RowRule("duplicate_object", "is_duplicate_object", "in_set",
                "no object drawn twice in one answer",
                lambda c: "same " + c["kind_label"].astype(str) + " drawn twice by "
                + c["annotator_id"].astype(str) + " on task " + c["task_id"].astype(str),
                value_set=(False,)),
        RowRule("negative_lead_time", "lead_time_s", "between", "time spent on a task is not negative",
                lambda c: "lead_time " + _fmt(c["lead_time_s"]) + " s is negative", min_value=0),
    ]


def build_row_suite(ontology: Any, thresholds: QAThresholds = QAThresholds()) -> gx.ExpectationSuite:
    """The row-level ExpectationSuite, named after the ontology version it encodes."""
    return gx.ExpectationSuite(name=f"annotations_rows__{suite_version_tag(ontology)}",
                               expectations=[rule.expectation() for rule in row_rules(ontology, thresholds)],
                               meta={"ontology_version": ontology_dict(ontology)["version"]})



@dataclass
class RowValidation:
    accepted: pd.DataFrame      # contracts.ANNOTATIONS
    quarantined: pd.DataFrame   # contracts.QUARANTINE, stage "qa"
    expectations: list[ExpectationOutcome]
    suite_name: str
    success: bool               # every expectation met (no row quarantined)
    data_docs_url: str | None = None

    @property
    def n_received(self) -> int:
        return self.n_accepted + self.n_quarantined

    @property
    def n_accepted(self) -> int:
        return len(self.accepted)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantined)

    def expectation_results(self) -> list[dict[str, Any]]:
        """Each expectation's result as Great Expectations reported it, beside the rows quarantined."""
        return [{"expectation": o.expectation_type, "column": o.column, "success": o.success,
                 "element_count": o.element_count, "unexpected_count": o.unexpected_count,
                 "unexpected_percent": round(100.0 * o.unexpected_count / o.element_count, 3) if o.element_count else None,
                 "quarantined": o.quarantined_count, "description": o.description} for o in self.expectations]

    def check_outcomes(self) -> list[CheckOutcome]:
        """One non-blocking check per expectation: failing rows are quarantined, the batch goes on."""
        results = self.expectation_results()
        return [CheckOutcome(
            name=f"rows_{o.reason}", passed=o.success, blocking=False,
            severity="WARN", description=o.description,
            metadata={"suite": self.suite_name, "expectation": o.expectation_type,
                      "column": o.column, "element_count": o.element_count,
                      "unexpected_count": o.unexpected_count, "quarantined": o.quarantined_count,
                      "data_docs": self.data_docs_url or ""},
            failing_examples=o.examples, gx_results=[row]) for o, row in zip(self.expectations, results)]



_CONTEXT_COLUMNS = ["annotation_id", "source_file", "task_id", "batch_id", "annotator_id",
                    "image_width", "image_height", "kind", "label", "geometry_wkb"]


def _failing_context(bad: pd.DataFrame, local: np.ndarray, source_file: pd.Series, missing: np.ndarray,
                     required: list[str], extras: tuple[str, ...]) -> pd.DataFrame:
    """One rule's failing rows with their checks and identifying columns (messages and examples).

    ``bad`` holds the context and check columns of every failing row of the batch, taken out
    of the 1M-row frames once per validation (taking them per rule cost more than all the
    checks together), ``local`` this rule's rows within it and ``missing`` their null mask of
    the ``required`` columns. ``extras`` names the costlier context a rule's sentence needs;
    nothing else is computed. ``source_file`` is the whole batch's column: the first answer
    a duplicate repeats may itself be accepted.
    """
    sub = bad.iloc[local].reset_index(drop=True)
    if "missing_fields" in extras:
        names = np.array(required)
        sub["missing_fields"] = [", ".join(names[m]) for m in missing]
    if "first_source_file" in extras:
        sub["first_source_file"] = source_file.take(sub["first_source_row"].to_numpy()).to_numpy()
    if "polygon_reason" in extras:
        reasons = np.full(len(sub), "", dtype=object)
        is_poly = (sub["kind"] == "polygon").fillna(False).to_numpy(dtype=bool) & sub["geometry_wkb"].notna().to_numpy()
        if is_poly.any():
            reasons[is_poly] = shapely.is_valid_reason(
                shapely.from_wkb(sub["geometry_wkb"].to_numpy(dtype=object)[is_poly], on_invalid="ignore"))
        sub["polygon_reason"] = reasons
    return sub


_EXAMPLE_COLUMNS = ["annotation_id", "source_file", "task_id", "annotator_id"]


def validate_annotations(annotations: pd.DataFrame, tasks: pd.DataFrame, ontology: Any, *,
                         thresholds: QAThresholds = QAThresholds(), partition_date: str = "",
                         docs_dir: Path | None = None, run_name: str = "",
                         n_examples: int = 5) -> RowValidation:
    """Run the row-level suite; quarantine failing rows, accept the rest.

    ``docs_dir``: when given, the validation runs through a Checkpoint with
    ``UpdateDataDocsAction``; its Data Docs site is published as ``docs_dir/rows`` (see
    ``gx_bridge``; batch health publishes beside it) and
    ``data_docs_url`` points at the page of this validation.
    """
    missing_columns = [c for c in ANNOTATIONS.columns if c not in annotations.columns]
    if missing_columns:
        raise ContractError(f"{ANNOTATIONS.name}: missing column(s) {', '.join(missing_columns)}")
    a = annotations.reset_index(drop=True)
    rules = row_rules(ontology, thresholds)
    suite = build_row_suite(ontology, thresholds)
    checks = derive_check_columns(a, tasks, ontology)
    failing_by_reason = {rule.reason: rule.failing(checks) for rule in rules}
    bad_rows = np.flatnonzero(np.logical_or.reduce(list(failing_by_reason.values())))
    # The accepted rows are copied out on a worker thread while Great Expectations runs here:
    # Arrow's take releases the GIL, GX is Python that holds it, so the two overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-accepted") as pool:
        accepted = pool.submit(_accepted_rows, a, bad_rows)
        gx_columns = list(dict.fromkeys([r.column for r in rules] + [r.column_b for r in rules if r.column_b]))
        with GXRunner(docs_dir / "rows" if docs_dir is not None else None) as runner:
            result, docs_url = runner.validate(checks[gx_columns], suite, run_name)
        examples_by_reason, reasons, details = _quarantine_reasons(
            a, checks, rules, failing_by_reason, bad_rows, n_examples)
        b = a.iloc[bad_rows]
        quarantined = quarantine_rows(
            STAGE, partition_date, b["source_file"].to_numpy(dtype=object),
            ("task=" + b["task_id"].astype(str) + " annotation_id=" + b["annotation_id"].astype(str)).to_numpy(dtype=object),
            "", details, item_id=b["item_id"].to_numpy(dtype=object),
            annotator_id=b["annotator_id"].to_numpy(dtype=object),
            annotation_id=b["annotation_id"].to_numpy(dtype=object))
        quarantined["reason"] = pd.array(reasons.astype(str), dtype="string")
        accepted = accepted.result()

    gx_by_reason = {r.expectation_config.meta["reason"]: r for r in result.results}
    outcomes = [expectation_outcome(
        gx_by_reason[rule.reason], reason=rule.reason, column=rule.column, description=rule.description,
        quarantined_count=int(failing_by_reason[rule.reason].sum()), default_count=len(a),
        examples=examples_by_reason[rule.reason]) for rule in rules]
    return RowValidation(accepted, QUARANTINE.conform(quarantined), outcomes, suite.name,
                         bool(result.success), docs_url)


def _accepted_rows(a: pd.DataFrame, bad_rows: np.ndarray) -> pd.DataFrame:
    if not len(bad_rows):
        return ANNOTATIONS.conform(a)
    keep = np.ones(len(a), dtype=bool)
    keep[bad_rows] = False
    return ANNOTATIONS.conform(a.loc[keep])


def _quarantine_reasons(a: pd.DataFrame, checks: pd.DataFrame, rules: list[RowRule],
                        failing_by_reason: dict[str, np.ndarray], bad_rows: np.ndarray, n_examples: int
                        ) -> tuple[dict[str, list[dict[str, Any]]], np.ndarray, np.ndarray]:
    """Per rule: examples of its failing rows. Per failing row (``bad_rows``): the first rule
    it fails and a sentence naming the others.

    Returns (examples_by_reason, reasons, details), the last two aligned with ``bad_rows``.
    The masks in ``failing_by_reason`` come from each rule's own specification
    (:meth:`RowRule.failing`), not from Great Expectations' result; the caller records both
    counts side by side. Everything here works on the failing rows only: their context is
    taken out of the batch once, and the "also failed" suffix is built once per distinct
    combination of rules.
    """
    failing = np.stack([mask[bad_rows] for mask in failing_by_reason.values()], axis=1) if rules \
        else np.zeros((len(bad_rows), 0), dtype=bool)           # failing rows x rules
    first_rule = failing.argmax(axis=1)                          # suite order: the first rule wins
    # every row with an empty required field failed the first rule, so the failing rows suffice
    required, missing = missing_required(a.iloc[bad_rows])
    bad = pd.concat([a[_CONTEXT_COLUMNS].iloc[bad_rows].reset_index(drop=True),
                     checks.drop(columns=["kind"]).iloc[bad_rows].reset_index(drop=True)], axis=1)
    details = np.empty(len(bad_rows), dtype=object)
    examples_by_reason: dict[str, list[dict[str, Any]]] = {}
    for i, rule in enumerate(rules):
        local = np.flatnonzero(failing[:, i])
        examples: list[dict[str, Any]] = []
        if len(local):
            first = first_rule[local] == i
            needed = first.copy()          # sentences for the rows this rule names, and the examples
            needed[:n_examples] = True
            rows = local[needed]
            context = _failing_context(bad, rows, a["source_file"], missing[rows], required, rule.context)
            sentences = rule.detail(context).to_numpy(dtype=object)
            details[local[first]] = sentences[first[needed]]
            sample = context.head(n_examples)[_EXAMPLE_COLUMNS + [rule.column]]
            examples = [{**{k: plain(v) for k, v in rec.items()}, "detail": s}
                        for rec, s in zip(sample.to_dict("records"), sentences[:n_examples])]
        examples_by_reason[rule.reason] = examples

    reason_names = np.array([r.reason for r in rules], dtype=object)
    reasons = reason_names[first_rule]
    # Rows that fail more rules than their first: one suffix per distinct combination.
    others = failing.copy()
    others[np.arange(len(bad_rows)), first_rule] = False
    several = np.flatnonzero(others.any(axis=1))
    if len(several):
        bits = others[several].astype(np.int64) @ (np.int64(1) << np.arange(len(rules), dtype=np.int64))
        combos, which = np.unique(bits, return_inverse=True)
        suffixes = np.array(["; also failed: " + ", ".join(reason_names[(combo >> np.arange(len(rules))) & 1 == 1])
                             for combo in combos], dtype=object)
        details[several] = details[several] + suffixes[which]
    return examples_by_reason, reasons, details
