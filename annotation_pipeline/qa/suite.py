"""Quality checks on returned annotations, run by Great Expectations 1.x suites kept as code.

Two levels, as the Dagster asset checks surface them:

- **Row level** (``validate_annotations``): schema, ontology membership, geometry, duplicates,
  partial answers. Failing rows are quarantined with the reason of the first expectation they
  fail (suite order goes from "cannot be read" to "looks wrong"), the rest are accepted, and
  the batch goes on.
- **Batch level** (``batch_health``): what is left still meets the contract, completeness,
  gold accuracy, quarantined share (blocking: they stop consensus), per-annotator gold
  accuracy and lead-time outliers (warnings).

Speed: GX filters the whole validated frame once per expectation, so we hand it a narrow frame
of derived columns (categoricals, floats, booleans; area, aspect, polygon validity, duplicate
flags computed vectorized with numpy / pandas / shapely 2) and ``result_format="BASIC"``. The
row indices to quarantine come from pandas masks built from the same rule specification as the
expectation, and each outcome records both counts so a disagreement cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation_pipeline.settings import silence_phone_home  # noqa: E402

silence_phone_home()  # no internet here: GX must not phone home before it is imported

import great_expectations as gx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import shapely  # noqa: E402
from great_expectations.checkpoint import UpdateDataDocsAction  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from annotation_pipeline.consensus.boxes import box_iou, polygon_iou  # noqa: E402
from annotation_pipeline.contracts import ANNOTATIONS, QUARANTINE, ContractError, quarantine_rows  # noqa: E402
from annotation_pipeline.ontology import ontology_dict, ontology_labels  # noqa: E402

STAGE = "qa"
E = gx.expectations


@dataclass(frozen=True)
class QAThresholds:
    # Boxes drawn to the very edge land a pixel or two outside after percent rounding.
    bounds_tolerance_px: float = 2.0
    # The handoff image size and the size the annotator saw must agree (rounding only).
    image_size_tolerance_px: float = 1.0
    gold_iou: float = 0.5                      # PASCAL VOC match criterion
    min_gold_accuracy: float = 0.75            # whole batch; blocking
    min_annotator_gold_accuracy: float = 0.6   # per annotator; warning
    max_quarantine_share: float = 0.2          # blocking
    # Iglewicz & Hoaglin: |modified z| > 3.5 is an outlier; computed on log(seconds) because
    # time per task is right-skewed.
    lead_time_robust_z: float = 3.5
    max_lead_time_outlier_share: float = 0.5   # per annotator; warning
    min_complete_task_share: float = 1.0       # every non-gold task reaches its overlap k


# ---------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the row-level suite on one batch."""
    reason: str                 # reason code written to the quarantine
    expectation_type: str       # e.g. expect_column_values_to_be_between
    column: str
    description: str
    success: bool               # as Great Expectations reported it
    element_count: int
    unexpected_count: int       # as Great Expectations reported it
    quarantined_count: int      # rows this rule flags by its pandas mask (equals unexpected_count)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckOutcome:
    """What a Dagster asset check needs: pass/fail, blocking, metadata, failing examples."""
    name: str
    passed: bool
    blocking: bool
    severity: str               # "ERROR" or "WARN"
    description: str
    metadata: dict[str, Any]
    failing_examples: list[dict[str, Any]] = field(default_factory=list)


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

    def check_outcomes(self) -> list[CheckOutcome]:
        """One non-blocking check per expectation: failing rows are quarantined, the batch goes on."""
        return [CheckOutcome(
            name=f"rows_{o.reason}", passed=o.success, blocking=False,
            severity="WARN", description=o.description,
            metadata={"suite": self.suite_name, "expectation": o.expectation_type,
                      "column": o.column, "element_count": o.element_count,
                      "unexpected_count": o.unexpected_count, "quarantined": o.quarantined_count,
                      "data_docs": self.data_docs_url or ""},
            failing_examples=o.examples) for o in self.expectations]


# ---------------------------------------------------------------- GX plumbing

class _GXRunner:
    """Runs a suite on a DataFrame: ephemeral context, or file context + Data Docs."""

    def __init__(self, docs_dir: Path | None = None):
        if docs_dir is None:
            self.context = gx.get_context(mode="ephemeral")
        else:
            Path(docs_dir).mkdir(parents=True, exist_ok=True)
            self.context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.with_docs = docs_dir is not None
        self.datasource = self.context.data_sources.add_or_update_pandas("returned_annotations")

    def validate(self, frame: pd.DataFrame, suite: gx.ExpectationSuite, run_name: str = ""
                 ) -> tuple[Any, str | None]:
        """Returns (ExpectationSuiteValidationResult, URL of its Data Docs page or None)."""
        name = suite.name
        try:
            asset = self.datasource.get_asset(name)
        except LookupError:
            asset = self.datasource.add_dataframe_asset(name)
        batch = next((b for b in asset.batch_definitions if b.name == "whole"), None) \
            or asset.add_batch_definition_whole_dataframe("whole")
        stored_suite = self.context.suites.add_or_update(suite)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=stored_suite))
        if not self.with_docs:
            return definition.run(batch_parameters={"dataframe": frame}, result_format="BASIC"), None
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition], result_format="BASIC",
            actions=[UpdateDataDocsAction(name="update_data_docs")]))
        result = checkpoint.run(batch_parameters={"dataframe": frame},
                                run_id=RunIdentifier(run_name=run_name or None))
        key, validation = next(iter(result.run_results.items()))
        urls = self.context.get_docs_sites_urls(resource_identifier=key)
        return validation, (urls[0]["site_url"] if urls else None)


# ---------------------------------------------------------------- row-level suite (as code)

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


# ---------------------------------------------------------------- derived columns (vectorized)

def _task_keys(a: pd.DataFrame, tasks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per annotation: a dense code of its (batch_id, task_id), and the row of ``tasks`` that
    handed that task out (-1 when the handoff never sent it)."""
    batch_codes, batches = _codes(a["batch_id"])
    task_codes, task_ids = _codes(a["task_id"])
    raw_key = (batch_codes + 1) * (len(task_ids) + 1) + (task_codes + 1)
    task_key, raw_of_key = pd.factorize(raw_key)  # dense codes; raw_of_key[code] is its raw key
    task_key = task_key.astype(np.int64)
    n_keys = len(raw_of_key)
    sent_batch = _positions_in(tasks["batch_id"].astype(a["batch_id"].dtype), batches)
    sent_task = _positions_in(tasks["task_id"].astype(a["task_id"].dtype), task_ids)
    received = (sent_batch >= 0) & (sent_task >= 0)  # handoff rows that some annotation names
    handoff_row = np.full(n_keys + 1, -1, dtype=np.int64)  # by task key; the extra slot stays unused
    if received.any():
        sent_raw = (sent_batch[received] + 1) * (len(task_ids) + 1) + (sent_task[received] + 1)
        sent_key = pd.Index(raw_of_key).get_indexer(sent_raw)  # -1 (the extra slot) when never answered
        rows = np.flatnonzero(received)
        # the first handoff row of a key wins, as drop_duplicates(keep="first") would
        handoff_row[sent_key[::-1]] = rows[::-1]
    return task_key, handoff_row[task_key]


def _positions_in(values: pd.Series, uniques: pd.Index) -> np.ndarray:
    """Position of each value in ``uniques`` (-1 when absent or null).

    Arrow's ``index_in`` hashes the strings where they are; ``Index.get_indexer`` first
    converted both sides to Python objects (ten times slower at 100k tasks).
    """
    if not len(values) or not len(uniques):
        return np.full(len(values), -1, dtype=np.int64)
    try:
        found = pc.index_in(pa.array(values, from_pandas=True), value_set=pa.array(uniques, from_pandas=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):  # mixed or exotic dtypes
        return uniques.get_indexer(values).astype(np.int64)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _first_row_of(codes: np.ndarray) -> np.ndarray:
    """For each row, the first row with the same (non-negative, dense) code: one pass, no sort."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    order = np.arange(len(codes), dtype=np.int64)
    first[codes[::-1]] = order[::-1]  # the last write per code wins: the earliest row
    return first[codes]


def _required_columns(a: pd.DataFrame) -> list[str]:
    return [name for name, col in ANNOTATIONS.columns.items() if not col.nullable and name in a]


def _missing_required(a: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The required columns that hold a missing value, and rows x those columns, True where missing.

    Columns Arrow knows to hold no null are skipped without a scan or an allocation: on this
    machine the fresh memory of a 1M-row boolean array per column cost more than the scan.
    """
    with_nulls = []
    for name in _required_columns(a):
        values = a[name].array
        if isinstance(values, pd.arrays.ArrowExtensionArray):  # Arrow keeps the count of nulls
            has_nulls = values.__arrow_array__().null_count > 0
        else:
            has_nulls = a[name].hasnans
        if has_nulls:
            with_nulls.append(name)
    if not with_nulls:
        return [], np.zeros((len(a), 0), dtype=bool)
    return with_nulls, a[with_nulls].isna().to_numpy()


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values)  # NA -> -1
    return codes.astype(np.int64), pd.Index(uniques)


def _per_category(codes: np.ndarray, categories: pd.Index, lookup: dict[str, float]) -> np.ndarray:
    """Look a per-class number up once per category, then broadcast by code (NaN if unknown)."""
    table = np.append(np.array([lookup.get(str(c), np.nan) for c in categories], dtype=float), np.nan)
    return table[codes]  # code -1 picks the trailing NaN


def _duplicate_rows(*columns: np.ndarray) -> np.ndarray:
    """Rows whose values in all ``columns`` equal an earlier row's (keep-first semantics of
    ``DataFrame.duplicated``), exactly.

    One 64-bit hash per row finds candidates in a single hash-table pass (DataFrame.duplicated
    factorizes every column: 0.7 s at 1M rows); each candidate is then compared with the first
    row of its hash, so a hash collision can never mark a distinct object as a duplicate.
    Columns are hashed one at a time (no stacked copy of the key).
    """
    n = len(columns[0]) if columns else 0
    if not n:
        return np.zeros(0, dtype=bool)
    row_hash = np.zeros(n, dtype=np.uint64)
    for col in columns:  # order-sensitive mix of the column hashes (FNV-style)
        bits = np.ascontiguousarray(col + 0.0 if col.dtype.kind == "f" else col)  # + 0.0 folds -0.0 into 0.0
        row_hash *= np.uint64(0x100000001B3)
        row_hash ^= pd.util.hash_array(bits.view(np.uint64), categorize=False)
    codes, _ = pd.factorize(row_hash)
    first = _first_row_of(codes)
    rows = np.flatnonzero(first != np.arange(n))
    same = np.ones(len(rows), dtype=bool)
    for col in columns:
        same &= (col[rows] == col[first[rows]])
    out = np.zeros(n, dtype=bool)
    out[rows[same]] = True
    return out


@dataclass
class _Geometry:
    """Per-row geometry checks of boxes and polygons (see derive_check_columns for the columns)."""
    columns: dict[str, np.ndarray]
    edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]   # x_min, y_min, x_max, y_max
    area: np.ndarray       # px², box or polygon
    finite: np.ndarray     # a box or polygon whose four edges are finite


def _geometry_checks(a: pd.DataFrame, is_box: np.ndarray, is_poly: np.ndarray,
                     label_codes: np.ndarray, labels: pd.Index, objects: dict[str, Any]) -> _Geometry:
    """Extent, area, bounds, size, aspect and polygon validity; neutral values where they do not apply."""
    n = len(a)
    geometric = is_box | is_poly
    width = a["image_width"].to_numpy(dtype=float, na_value=np.nan)
    height = a["image_height"].to_numpy(dtype=float, na_value=np.nan)
    x0, y0 = a["x_min"].to_numpy(dtype=float, na_value=np.nan), a["y_min"].to_numpy(dtype=float, na_value=np.nan)
    x1, y1 = a["x_max"].to_numpy(dtype=float, na_value=np.nan), a["y_max"].to_numpy(dtype=float, na_value=np.nan)
    poly_rows = np.flatnonzero(is_poly)
    geoms = shapely.from_wkb(a["geometry_wkb"].to_numpy(dtype=object)[poly_rows], on_invalid="ignore") \
        if len(poly_rows) else np.array([], dtype=object)
    readable = ~shapely.is_missing(geoms)
    out: dict[str, np.ndarray] = {}

    nonfinite = ((~np.isfinite(x0)).astype(float) + ~np.isfinite(y0) + ~np.isfinite(x1) + ~np.isfinite(y1))
    nonfinite[poly_rows[~readable]] = 4.0  # no readable polygon at all
    out["n_nonfinite_coords"] = np.where(geometric, nonfinite, 0.0)
    finite = geometric & (nonfinite == 0)

    w, h = x1 - x0, y1 - y0
    out["min_signed_extent_px"] = np.where(finite, np.fmin(w, h), 0.0)
    area = np.clip(w, 0, None) * np.clip(h, 0, None)
    polygon_is_valid = np.ones(n, dtype=bool)  # True where there is no readable polygon to judge
    if len(poly_rows):
        polygon_is_valid[poly_rows[readable]] = shapely.is_valid(geoms[readable])
        area[poly_rows[readable]] = shapely.area(geoms[readable])
    out["polygon_is_valid"] = polygon_is_valid
    out["area_px"] = np.where(finite, area, np.inf)
    with np.errstate(invalid="ignore"):
        outside = np.fmax.reduce([-x0, -y0, x1 - width, y1 - height])
    out["outside_image_px"] = np.where(finite, outside, 0.0)

    min_size = {k: float(v.get("min_size_px", 0)) for k, v in objects.items()}
    max_aspect = {k: float(v.get("max_aspect_ratio", np.inf)) for k, v in objects.items()}
    short, long = np.fmin(np.abs(w), np.abs(h)), np.fmax(np.abs(w), np.abs(h))
    proper = finite & (w >= 0) & (h >= 0)
    out["min_side_px"] = np.where(proper, short, np.inf)
    out["min_size_px"] = np.nan_to_num(np.where(proper, _per_category(label_codes, labels, min_size), 0.0), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(short > 0, long / short, np.inf)
    positive = proper & (short > 0)
    out["aspect_ratio"] = np.where(positive, aspect, 0.0)
    out["max_aspect_ratio"] = np.nan_to_num(np.where(positive, _per_category(label_codes, labels, max_aspect), np.inf),
                                            nan=np.inf)
    return _Geometry(out, (x0, y0, x1, y1), area, finite)


def derive_check_columns(annotations: pd.DataFrame, tasks: pd.DataFrame, ontology: Any) -> pd.DataFrame:
    """The narrow frame the row suite validates, one row per annotation, same order.

    Only numbers, booleans and categoricals, and no nulls: where a rule does not apply to a
    row (geometry of a scene choice, area of a box whose corners are missing, size of an
    image whose task is unknown) the column holds a neutral value that passes the rule
    (0 for limits from above, +inf where more than 0 is required), so that row is judged
    only by the rule that does apply. Nulls would mean the same to Great Expectations, but it
    drops them by filtering the *whole* frame, twice per expectation: at 1M rows that made
    the suite 2.2x slower. ``first_source_row`` points at the row of the annotator's first
    answer to the task (for the duplicate message).
    """
    a = annotations.reset_index(drop=True)
    n = len(a)
    kind_codes, kinds = _codes(a["kind"])
    label_codes, labels = _codes(a["label"])
    kind_list = list(kinds)
    is_box = kind_codes == (kind_list.index("box") if "box" in kind_list else -2)
    is_poly = kind_codes == (kind_list.index("polygon") if "polygon" in kind_list else -2)
    is_choice = kind_codes == (kind_list.index("choice") if "choice" in kind_list else -2)
    # The geometry is judged on a second thread while this one works on the string keys:
    # both spend their time in numpy, Arrow and GEOS, which release the GIL.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-geometry") as pool:
        geometry = pool.submit(_geometry_checks, a, is_box, is_poly, label_codes, labels,
                               ontology_dict(ontology)["objects"])
        # Columns are gathered in a dict and framed once, without copying: assigning them one
        # by one to a DataFrame copied each (at 1M rows ~3 ms a column warm, far more on
        # memory this process has not touched yet).
        c: dict[str, Any] = {}
        c["n_missing_required"] = _missing_required(a)[1].sum(axis=1, dtype=np.int64)
        c["kind"] = pd.Categorical.from_codes(kind_codes, categories=kinds) if len(kinds) else pd.Categorical([None] * n)
        both = (kind_codes >= 0) & (label_codes >= 0)
        pair_codes = np.where(both, kind_codes * max(len(labels), 1) + label_codes, -1)
        pair_names = [f"{k}:{lab}" for k in kinds for lab in labels]
        c["kind_label"] = pd.Categorical.from_codes(pair_codes, categories=pd.Index(pair_names).unique()) \
            if pair_names and len(set(pair_names)) == len(pair_names) else pd.Categorical([None] * n)

        # Task keys: factorized once, looked up in the handoff by code (a merge on two string
        # columns cost as much as all the geometry checks), and reused for the answer keys.
        task_key, handoff_row = _task_keys(a, tasks)
        c["task_known"] = handoff_row >= 0
        width = a["image_width"].to_numpy(dtype=float, na_value=np.nan)
        height = a["image_height"].to_numpy(dtype=float, na_value=np.nan)
        sent_width = np.append(tasks["image_width"].to_numpy(dtype=float, na_value=np.nan), np.nan)[handoff_row]
        sent_height = np.append(tasks["image_height"].to_numpy(dtype=float, na_value=np.nan), np.nan)[handoff_row]
        size_error = np.fmax(np.abs(width - sent_width), np.abs(height - sent_height))
        c["image_size_error_px"] = np.nan_to_num(size_error, nan=0.0)  # unknown task or size: judged elsewhere

        annotator_codes, annotators = _codes(a["annotator_id"])
        answer = pd.factorize(task_key * (len(annotators) + 1) + (annotator_codes + 1))[0]  # dense, first-seen order
        source = _codes(a["source_file"])[0]
        first_source_row = _first_row_of(answer)
        from_later_file = source != source[first_source_row]
        second_choice = np.zeros(n, dtype=bool)
        second_choice[is_choice] = pd.Series(answer[is_choice]).duplicated().to_numpy()
        c["is_duplicate_answer"] = from_later_file | second_choice
        c["first_source_row"] = first_source_row
        has_scene = np.zeros(int(answer.max()) + 1 if n else 0, dtype=bool)
        has_scene[answer[is_choice]] = True
        c["answer_has_scene"] = has_scene[answer]
        geometry = geometry.result()

    for name in ["n_nonfinite_coords", "min_signed_extent_px", "polygon_is_valid", "area_px", "outside_image_px",
                 "min_side_px", "min_size_px", "aspect_ratio", "max_aspect_ratio"]:
        c[name] = geometry.columns[name]
    finite = geometry.finite
    dup_obj = np.zeros(n, dtype=bool)
    if finite.any():
        n_sources, n_pairs = int(source.max()) + 2, int(pair_codes.max()) + 2
        owner = (answer[finite] * n_sources + (source[finite] + 1)) * n_pairs + (pair_codes[finite] + 1)
        dup_obj[finite] = _duplicate_rows(owner.astype(np.int64), *(edge[finite] for edge in geometry.edges),
                                          geometry.area[finite])
    c["is_duplicate_object"] = dup_obj
    c["lead_time_s"] = a["lead_time_s"].to_numpy(dtype=float, na_value=0.0)  # missing: judged as a required field
    return pd.DataFrame(c, index=pd.RangeIndex(n), copy=False)


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


# ---------------------------------------------------------------- row validation

_EXAMPLE_COLUMNS = ["annotation_id", "source_file", "task_id", "annotator_id"]


def validate_annotations(annotations: pd.DataFrame, tasks: pd.DataFrame, ontology: Any, *,
                         thresholds: QAThresholds = QAThresholds(), partition_date: str = "",
                         docs_dir: Path | None = None, run_name: str = "",
                         n_examples: int = 5) -> RowValidation:
    """Run the row-level suite; quarantine failing rows, accept the rest.

    ``docs_dir``: when given, the validation runs through a file-mode GX context and a
    Checkpoint with ``UpdateDataDocsAction``, and ``data_docs_url`` points at its HTML page.
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
        result, docs_url = _GXRunner(docs_dir).validate(checks[gx_columns], suite, run_name)
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
    outcomes = []
    for rule in rules:
        gx_result = gx_by_reason[rule.reason]
        stats = gx_result.result or {}
        outcomes.append(ExpectationOutcome(
            reason=rule.reason, expectation_type=gx_result.expectation_config.type,
            column=rule.column, description=rule.description, success=bool(gx_result.success),
            element_count=int(stats.get("element_count", len(a))),
            unexpected_count=int(stats.get("unexpected_count", 0) or 0),
            quarantined_count=int(failing_by_reason[rule.reason].sum()),
            examples=examples_by_reason[rule.reason]))
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
    required, missing = _missing_required(a.iloc[bad_rows])
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
            examples = [{**{k: _plain(v) for k, v in rec.items()}, "detail": s}
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


def _plain(value: Any) -> Any:
    """JSON-able scalars for Dagster metadata."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if value is pd.NA or value is None:
        return None
    return value if isinstance(value, (int, str, bool)) else str(value)


# ---------------------------------------------------------------- gold accuracy

def _pairwise_iou(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """IoU of row-aligned pairs: boxes from their edges, polygons (both valid) through GEOS."""
    edges = ["x_min", "y_min", "x_max", "y_max"]
    iou = box_iou(a[edges].to_numpy(dtype=float, na_value=np.nan), b[edges].to_numpy(dtype=float, na_value=np.nan))
    polys = (a["geometry_wkb"].notna() & b["geometry_wkb"].notna()).to_numpy()
    if polys.any():
        ga = shapely.from_wkb(a["geometry_wkb"].to_numpy(dtype=object)[polys], on_invalid="ignore")
        gb = shapely.from_wkb(b["geometry_wkb"].to_numpy(dtype=object)[polys], on_invalid="ignore")
        usable = shapely.is_valid(ga) & shapely.is_valid(gb)
        p_iou = np.zeros(len(ga))
        p_iou[usable] = polygon_iou(ga[usable], gb[usable])
        iou[polys] = p_iou
    return iou


def gold_answer_outcomes(accepted: pd.DataFrame, gold: pd.DataFrame, *, iou_threshold: float = 0.5
                         ) -> pd.DataFrame:
    """One row per judged element of an annotator's answers on gold tasks.

    element: ``scene`` (their scene choice vs the gold scene), ``gold_object`` (a gold object:
    found when they drew the same class with IoU >= threshold), ``extra_object`` (an object they
    drew that matches no gold object: counted wrong, or drawing everywhere would pay).
    Columns: annotator_id, item_id, element, label, correct, iou.
    """
    cols = ["annotator_id", "item_id", "element", "label", "correct", "iou"]
    on_gold = accepted[accepted["is_gold"].fillna(False).to_numpy(dtype=bool)]
    gold_items = set(gold["item_id"])
    on_gold = on_gold[on_gold["item_id"].isin(gold_items)]
    if on_gold.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ["string", "string", "string", "string", "bool", "float64"])})
    answered = on_gold[["annotator_id", "item_id"]].drop_duplicates()

    scene_gold = gold[gold["kind"] == "choice"].drop_duplicates("item_id")[["item_id", "label"]]
    scene = answered.merge(scene_gold, on="item_id").merge(
        on_gold.loc[on_gold["kind"] == "choice", ["annotator_id", "item_id", "label"]].rename(columns={"label": "given"}),
        on=["annotator_id", "item_id"], how="left")
    scene = scene.assign(element="scene", correct=(scene["label"] == scene["given"]).fillna(False).to_numpy(dtype=bool),
                         iou=np.nan)

    geo = ["item_id", "kind", "label", "x_min", "y_min", "x_max", "y_max", "geometry_wkb"]
    gold_obj = gold.loc[gold["kind"] != "choice", geo].reset_index(drop=True).rename_axis("gold_idx").reset_index()
    drawn = on_gold.loc[on_gold["kind"] != "choice", ["annotator_id", "annotation_id"] + geo]
    pairs = drawn.merge(gold_obj, on=["item_id", "kind", "label"], suffixes=("", "_gold"))
    iou = _pairwise_iou(pairs[geo[3:]], pairs[[f"{c}_gold" for c in geo[3:]]].set_axis(geo[3:], axis=1)) \
        if len(pairs) else np.array([])
    pairs = pairs.assign(iou=iou)
    best_for_gold = pairs.groupby(["annotator_id", "gold_idx"], sort=False)["iou"].max()
    gold_found = answered.merge(gold_obj[["gold_idx", "item_id", "label"]], on="item_id")
    gold_found["iou"] = pd.MultiIndex.from_frame(gold_found[["annotator_id", "gold_idx"]]).map(best_for_gold) \
        if len(gold_found) else []
    gold_found = gold_found.assign(element="gold_object", iou=gold_found["iou"].astype(float).fillna(0.0))
    gold_found["correct"] = gold_found["iou"] >= iou_threshold
    best_for_drawn = pairs.groupby("annotation_id", sort=False)["iou"].max()
    extra = drawn.assign(iou=drawn["annotation_id"].map(best_for_drawn).astype(float).fillna(0.0))
    extra = extra[extra["iou"] < iou_threshold].assign(element="extra_object", correct=False)
    out = pd.concat([scene[cols], gold_found[cols], extra[cols]], ignore_index=True)
    return out.astype({"annotator_id": "string", "item_id": "string", "element": "string",
                       "label": "string", "correct": bool, "iou": float})


# ---------------------------------------------------------------- batch-level suites

def build_batch_suites(ontology: Any, thresholds: QAThresholds = QAThresholds()) -> dict[str, gx.ExpectationSuite]:
    """Batch-level suites (on small aggregated frames), named after the ontology version."""
    tag = suite_version_tag(ontology)
    t = thresholds
    return {
        "completeness": gx.ExpectationSuite(name=f"batch_completeness__{tag}", expectations=[
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="n_scene_answers", column_B="overlap", or_equal=True, mostly=t.min_complete_task_share,
                description="every non-gold task has scene answers from k distinct annotators")]),
        "gold_overall": gx.ExpectationSuite(name=f"gold_accuracy_overall__{tag}", expectations=[
            E.ExpectColumnMedianToBeBetween(column="gold_accuracy", min_value=t.min_gold_accuracy,
                                            description="median annotator gold accuracy of the batch "
                                                        f">= {t.min_gold_accuracy}")]),
        "gold_per_annotator": gx.ExpectationSuite(name=f"gold_accuracy_per_annotator__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(column="gold_accuracy", min_value=t.min_annotator_gold_accuracy,
                                            description=f"each annotator's gold accuracy >= {t.min_annotator_gold_accuracy}")]),
        "lead_time": gx.ExpectationSuite(name=f"lead_time_outliers__{tag}", expectations=[
            E.ExpectColumnValuesToBeBetween(column="outlier_share", max_value=t.max_lead_time_outlier_share,
                                            description="share of an annotator's answers with |robust z| of "
                                                        f"log time > {t.lead_time_robust_z} stays <= {t.max_lead_time_outlier_share}")]),
    }


def _records(df: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in df.head(n).to_dict("records")]


def lead_time_by_annotator(accepted: pd.DataFrame, robust_z: float = 3.5) -> pd.DataFrame:
    """Per annotator: answers, median seconds, share of answers whose log time is an outlier.

    One answer = one (task, annotator); modified z-score (0.6745 (x - median) / MAD) over all
    answers of the batch, on log seconds.
    """
    answers = accepted.dropna(subset=["lead_time_s"]).drop_duplicates(["batch_id", "task_id", "annotator_id"])
    seconds = answers["lead_time_s"].to_numpy(dtype=float)
    log_t = np.log(np.clip(seconds, 1e-3, None))
    center = np.median(log_t) if len(log_t) else 0.0
    mad = np.median(np.abs(log_t - center)) if len(log_t) else 0.0
    if mad > 0:
        z = 0.6745 * (log_t - center) / mad
    else:  # more than half the answers share one time: IBM's fallback, mean absolute deviation
        mean_ad = np.mean(np.abs(log_t - center)) if len(log_t) else 0.0
        z = (log_t - center) / (1.253314 * mean_ad) if mean_ad > 0 else np.zeros(len(log_t))
    frame = pd.DataFrame({"annotator_id": answers["annotator_id"].to_numpy(), "seconds": seconds,
                          "outlier": np.abs(z) > robust_z, "z": z})
    out = frame.groupby("annotator_id", sort=True).agg(
        n_answers=("seconds", "size"), median_lead_time_s=("seconds", "median"),
        outlier_share=("outlier", "mean"), median_robust_z=("z", "median")).reset_index()
    return out


def batch_health(accepted: pd.DataFrame, quarantined: pd.DataFrame, received_count: int,
                 tasks: pd.DataFrame, gold: pd.DataFrame, ontology: Any, *,
                 thresholds: QAThresholds = QAThresholds(), docs_dir: Path | None = None,
                 run_name: str = "") -> list[CheckOutcome]:
    """Batch-level checks after quarantine. Blocking ones stop consensus; warnings do not.

    ``accepted``: annotations that passed intake and the row suite; ``quarantined``: every
    quarantine row of this batch (intake and qa); ``received_count``: records received.
    """
    t = thresholds
    runner = _GXRunner(docs_dir)
    suites = build_batch_suites(ontology, t)
    outcomes = []

    # 1. What is left still meets the contract (blocking).
    problems = []
    try:
        ANNOTATIONS.validate(accepted)
    except ContractError as exc:
        problems.append(str(exc))
    n_dup_ids = int(accepted["annotation_id"].duplicated().sum()) if "annotation_id" in accepted else 0
    if n_dup_ids:
        problems.append(f"{n_dup_ids} duplicated annotation_id(s)")
    known = pd.MultiIndex.from_frame(tasks[["batch_id", "task_id"]].astype(str))
    unknown = ~pd.MultiIndex.from_frame(accepted[["batch_id", "task_id"]].astype(str)).isin(known) \
        if len(accepted) else np.array([], dtype=bool)
    if unknown.any():
        problems.append(f"{int(unknown.sum())} accepted row(s) reference tasks not in the handoff")
    outcomes.append(CheckOutcome(
        "accepted_rows_meet_contract", not problems, True, "ERROR",
        "rows left after quarantine satisfy the annotations contract",
        {"n_accepted": len(accepted), "problems": problems}))

    # 2. Completeness: k distinct annotators' scene answers per non-gold task (blocking).
    scene = accepted[accepted["kind"] == "choice"]
    n_scene = scene.drop_duplicates(["batch_id", "task_id", "annotator_id"]).groupby(
        ["batch_id", "task_id"]).size().rename("n_scene_answers")
    per_task = tasks.loc[~tasks["is_gold"].fillna(False).to_numpy(dtype=bool),
                         ["batch_id", "task_id", "item_id", "overlap"]].copy()
    per_task["n_scene_answers"] = pd.MultiIndex.from_frame(per_task[["batch_id", "task_id"]]).map(n_scene) \
        if len(per_task) else []
    per_task = per_task.astype({"overlap": float}).assign(n_scene_answers=lambda d: d["n_scene_answers"].astype(float).fillna(0.0))
    incomplete = per_task[per_task["n_scene_answers"] < per_task["overlap"]]
    if len(per_task):
        result, url = runner.validate(per_task[["n_scene_answers", "overlap"]], suites["completeness"], run_name)
        passed = bool(result.success)
    else:
        passed, url = True, None
    outcomes.append(CheckOutcome(
        "batch_completeness", passed, True, "ERROR",
        "every non-gold task has scene answers from k distinct annotators",
        {"n_tasks": len(per_task), "n_complete": len(per_task) - len(incomplete),
         "n_incomplete": len(incomplete), "data_docs": url or ""},
        _records(incomplete[["task_id", "item_id", "overlap", "n_scene_answers"]])))

    # 3. Gold accuracy of the batch (blocking) and per annotator (warning).
    # The batch figure is the median over annotators: one spammer among five must not fail a
    # batch whose other annotators are accurate (that is the per-annotator warning's job, and
    # consensus down-weights them), while a batch where most annotators miss gold does fail.
    # The pooled accuracy over all gold answers is reported beside it.
    elements = gold_answer_outcomes(accepted, gold, iou_threshold=t.gold_iou)
    has_gold_tasks = bool(tasks["is_gold"].fillna(False).any())
    per_ann = (elements.groupby("annotator_id").agg(gold_elements=("correct", "size"),
                                                      gold_accuracy=("correct", "mean")).reset_index()
               if len(elements) else pd.DataFrame({"annotator_id": [], "gold_elements": [], "gold_accuracy": []}))
    if len(elements):
        result, url = runner.validate(per_ann[["gold_accuracy"]].astype(float), suites["gold_overall"], run_name)
        passed = bool(result.success)
        accuracy, pooled = float(per_ann["gold_accuracy"].median()), float(elements["correct"].mean())
    else:
        passed, accuracy, pooled, url = not has_gold_tasks, float("nan"), float("nan"), None
    outcomes.append(CheckOutcome(
        "gold_accuracy_overall", passed, True, "ERROR",
        f"median annotator gold accuracy of the batch >= {t.min_gold_accuracy} "
        f"(class match; objects need IoU >= {t.gold_iou})",
        {"gold_accuracy": _plain(accuracy), "pooled_gold_accuracy": _plain(pooled),
         "n_gold_elements": len(elements), "has_gold_tasks": has_gold_tasks,
         "min_gold_accuracy": t.min_gold_accuracy, "data_docs": url or "",
         "note": "" if len(elements) or not has_gold_tasks else "gold tasks were sent but none was answered"},
        _records(per_ann.sort_values("gold_accuracy")) if len(per_ann) else []))
    low = per_ann[per_ann["gold_accuracy"] < t.min_annotator_gold_accuracy] if len(per_ann) else per_ann
    if len(per_ann):
        result, url = runner.validate(per_ann[["gold_accuracy"]].astype(float), suites["gold_per_annotator"], run_name)
        passed = bool(result.success)
    else:
        passed, url = True, None
    outcomes.append(CheckOutcome(
        "annotator_gold_accuracy", passed, False, "WARN",
        f"each annotator's gold accuracy >= {t.min_annotator_gold_accuracy}",
        {"n_annotators": len(per_ann), "n_below": len(low), "data_docs": url or "",
         "below": [str(a) for a in low["annotator_id"]] if len(low) else []},
        _records(low)))

    # 4. Share quarantined (blocking).
    share = len(quarantined) / received_count if received_count else 0.0
    outcomes.append(CheckOutcome(
        "quarantine_share", share <= t.max_quarantine_share, True, "ERROR",
        f"share of received records quarantined <= {t.max_quarantine_share}",
        {"received": int(received_count), "quarantined": len(quarantined), "accepted": len(accepted),
         "share": round(share, 4),
         "by_reason": {str(k): int(v) for k, v in quarantined["reason"].value_counts().items()}},
        _records(quarantined["reason"].value_counts().rename_axis("reason").reset_index(name="n"))))

    # 5. Lead-time outliers (warning).
    timing = lead_time_by_annotator(accepted, t.lead_time_robust_z)
    if len(timing):
        result, url = runner.validate(timing[["outlier_share"]].astype(float), suites["lead_time"], run_name)
        passed = bool(result.success)
    else:
        passed, url = True, None
    flagged = timing[timing["outlier_share"] > t.max_lead_time_outlier_share]
    outcomes.append(CheckOutcome(
        "lead_time_outliers", passed, False, "WARN",
        "annotators whose time per task is mostly an outlier (robust z-score of log seconds)",
        {"n_annotators": len(timing), "n_flagged": len(flagged), "data_docs": url or "",
         "median_lead_time_s": _plain(float(timing["median_lead_time_s"].median())) if len(timing) else None},
        _records(flagged)))
    return outcomes


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """The outcomes that must stop consensus for this partition."""
    return [o for o in outcomes if o.blocking and not o.passed]


# ---------------------------------------------------------------- scorecards

SCORECARD_COLUMNS = ["annotator_id", "n_answers", "n_tasks", "gold_tasks", "gold_accuracy",
                     "rework_rate", "median_lead_time_s", "agreement_with_consensus"]


def annotator_scorecards(accepted: pd.DataFrame, quarantined: pd.DataFrame, tasks: pd.DataFrame,
                         gold: pd.DataFrame, consensus_labels: pd.DataFrame | None = None, *,
                         iou_threshold: float = 0.5) -> pd.DataFrame:
    """One row per annotator (columns SCORECARD_COLUMNS).

    n_answers: rows they submitted (accepted + quarantined); n_tasks: distinct tasks accepted;
    rework_rate: share of their rows quarantined; agreement_with_consensus: share of their
    scene choices equal to the consensus scene label (NaN until consensus exists).
    """
    acc = accepted.groupby("annotator_id").agg(n_accepted=("annotation_id", "size"),
                                               n_tasks=("task_id", "nunique"))
    quar = quarantined.dropna(subset=["annotator_id"]).groupby("annotator_id").size().rename("n_quarantined")
    card = acc.join(quar, how="outer").fillna(0)
    card["n_answers"] = card["n_accepted"] + card["n_quarantined"]
    card["rework_rate"] = card["n_quarantined"] / card["n_answers"]
    gold_rows = accepted[accepted["is_gold"].fillna(False).to_numpy(dtype=bool)]
    card["gold_tasks"] = gold_rows.groupby("annotator_id")["task_id"].nunique().reindex(card.index).fillna(0)
    elements = gold_answer_outcomes(accepted, gold, iou_threshold=iou_threshold)
    card["gold_accuracy"] = elements.groupby("annotator_id")["correct"].mean().reindex(card.index)
    card["median_lead_time_s"] = (accepted.drop_duplicates(["batch_id", "task_id", "annotator_id"])
                                  .groupby("annotator_id")["lead_time_s"].median().reindex(card.index))
    card["agreement_with_consensus"] = np.nan
    if consensus_labels is not None and len(consensus_labels):
        truth = consensus_labels[consensus_labels["kind"] == "choice"].drop_duplicates("item_id").set_index("item_id")["label"]
        mine = accepted[accepted["kind"] == "choice"]
        # string dtype: items without a consensus label compare as NA, counted as not agreeing
        agree = (mine["label"].astype("string") == mine["item_id"].map(truth).astype("string")).fillna(False).to_numpy(bool)
        judged = mine["item_id"].isin(truth.index).to_numpy()
        card["agreement_with_consensus"] = (pd.Series(agree[judged], index=mine["annotator_id"].to_numpy()[judged])
                                            .groupby(level=0).mean().reindex(card.index))
    out = card.reset_index().rename(columns={"index": "annotator_id"})
    out = out.astype({"n_answers": "int64", "n_tasks": "int64", "gold_tasks": "int64",
                      "annotator_id": "string"})
    return out[SCORECARD_COLUMNS].sort_values("annotator_id").reset_index(drop=True)
