"""Full row-level QA suite on 1M returned annotations vs plain pandas, beside the GX anchor.

Run: python benchmarks/bench_qa.py [--rows N]

Measures, on the same synthetic batch (contracts.ANNOTATIONS rows: scene choices, boxes,
~10 % polygons; ~3 % defects of every kind the suite knows):
  ours       qa.row_suite.validate_annotations: derived columns + GX 1.x suite (16 expectations) +
             quarantine/accepted frames
  pandas     the same checks in plain pandas/numpy (derive_check_columns + every rule's mask)
  anchor     /work/shared/anchors/gx_1m_rows.py re-implemented here: GX, 11 expectations on
             its 1M-row frame, and its plain-pandas equivalent; ours and it alternate, and the
             headline is the median ratio of those pairs (this VM's speed drifts by the minute)
  script     the anchor script as shipped, in a fresh process before and after: checks that the
             re-implementation times what the quoted figure timed (its figure depends on the
             pandas major version: 1.21 s quoted, ~1.2 s here on pandas 2, ~0.35 s on pandas 3)
Targets (issue): validation <= 5 s and peak memory <= 2.5 GB for 1M rows.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402

from annotation_pipeline.contracts import ANNOTATIONS, VENDOR_TASKS  # noqa: E402
from annotation_pipeline.ontology import load_ontology  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: KiB


def synthetic_batch(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """~n_rows annotations: 3 annotators per task, 1 scene choice + 2.3 objects per answer."""
    rng = np.random.default_rng(seed)
    per_answer = 3.33
    n_tasks = int(n_rows / per_answer / 3)
    W, H = 640.0, 480.0
    tasks = VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": "bench", "task_id": np.arange(1, n_tasks + 1).astype(str),
        "item_id": np.char.add("item", np.arange(n_tasks).astype(str)), "is_gold": rng.random(n_tasks) < 0.02,
        "vendor": "simvendor", "image_file": np.char.add(np.arange(n_tasks).astype(str), ".png"),
        "image_width": W, "image_height": H, "overlap": 3, "ontology_version": "1.0.0",
        "guidelines_version": "1", "model_version": "m1"}))
    n_answers = n_tasks * 3
    task_of_answer = np.repeat(np.arange(n_tasks), 3)
    annotator = rng.integers(0, 200, n_answers)
    n_obj = rng.poisson(2.33, n_answers)
    rows_per_answer = 1 + n_obj
    n = int(rows_per_answer.sum())
    answer = np.repeat(np.arange(n_answers), rows_per_answer)
    first = np.r_[0, np.cumsum(rows_per_answer)[:-1]]
    is_choice = np.zeros(n, dtype=bool)
    is_choice[first] = True
    is_poly = ~is_choice & (rng.random(n) < 0.13)
    kind = np.where(is_choice, "choice", np.where(is_poly, "polygon", "box"))
    label = np.where(is_choice, rng.choice(["day", "night", "fog", "rain"], n),
                     np.where(is_poly, "sign", rng.choice(["car", "person", "bike"], n)))
    x0, y0 = rng.uniform(0, 560, n), rng.uniform(0, 400, n)
    w, h = rng.uniform(8, 80, n), rng.uniform(8, 80, n)
    x1, y1 = x0 + w, y0 + h
    poly_idx = np.flatnonzero(is_poly)
    # pentagon-ish outlines inside the box
    angles = np.linspace(0, 2 * np.pi, 6)[:-1]
    cx, cy = (x0 + x1)[poly_idx] / 2, (y0 + y1)[poly_idx] / 2
    coords = np.stack([cx[:, None] + np.cos(angles) * w[poly_idx, None] / 2,
                       cy[:, None] + np.sin(angles) * h[poly_idx, None] / 2], axis=-1).reshape(-1, 2)
    polys = shapely.polygons(shapely.linearrings(coords, indices=np.repeat(np.arange(len(poly_idx)), 5)))
    bounds = shapely.bounds(polys)
    x0[poly_idx], y0[poly_idx], x1[poly_idx], y1[poly_idx] = bounds.T
    wkb = np.full(n, None, dtype=object)
    wkb[poly_idx] = shapely.to_wkb(polys)
    for arr in (x0, y0, x1, y1):
        arr[is_choice] = np.nan
    df = pd.DataFrame({
        "annotation_id": pd.util.hash_array(np.arange(n, dtype=np.int64)).astype(str),
        "batch_id": "bench", "task_id": tasks["task_id"].to_numpy()[task_of_answer[answer]],
        "item_id": tasks["item_id"].to_numpy()[task_of_answer[answer]],
        "annotator_id": np.char.add("ann-", annotator[answer].astype(str)), "vendor": "simvendor",
        "kind": kind, "label": label, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1,
        "geometry_wkb": wkb, "image_width": W, "image_height": H,
        "lead_time_s": rng.lognormal(np.log(30), 0.4, n_answers)[answer],
        "is_gold": tasks["is_gold"].to_numpy()[task_of_answer[answer]],
        "source_file": np.char.add(np.char.add("bench/ann-", annotator[answer].astype(str)), ".json"),
        "source_sha256": "0" * 64, "ontology_version": "1.0.0", "guidelines_version": "1", "model_version": "m1"})
    # ~0.3 % of rows per defect kind
    geo = np.flatnonzero(~is_choice & ~is_poly)
    pick = lambda k: rng.choice(geo, int(n * 0.003), replace=False) if k else None  # noqa: E731
    df.loc[pick(1), "x_min"] = np.nan
    i = pick(1); df.loc[i, "x_max"] = df.loc[i, "x_min"] - 5
    i = pick(1); df.loc[i, "y_max"] = df.loc[i, "y_min"]
    i = pick(1); df.loc[i, "x_max"] = 700.0
    i = pick(1); df.loc[i, "y_max"] = df.loc[i, "y_min"] + 2
    i = pick(1); df.loc[i, "x_max"] = df.loc[i, "x_min"] + 200; df.loc[i, "y_max"] = df.loc[i, "y_min"] + 10
    df.loc[pick(1), "label"] = "truck"
    bow = rng.choice(poly_idx, int(len(poly_idx) * 0.01), replace=False)
    df.loc[bow, "geometry_wkb"] = pd.Series(list(shapely.to_wkb(shapely.polygons(
        [[(0, 0), (10, 10), (10, 0), (0, 10)]] * len(bow)))), index=bow)
    df.loc[rng.choice(n, 1000, replace=False), "task_id"] = "999999999"
    return ANNOTATIONS.conform(df), tasks


def anchor_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "item_id": rng.integers(0, 200_000, n).astype(str), "annotator_id": rng.integers(0, 50, n).astype(str),
        "label": rng.choice(["car", "person", "sign", "bike"], n),
        "x": rng.uniform(0, 600, n), "y": rng.uniform(0, 400, n),
        "w": rng.uniform(1, 100, n), "h": rng.uniform(1, 100, n), "img_w": 640.0, "img_h": 480.0})


def run_anchor(df: pd.DataFrame) -> tuple[float, float]:
    """The anchor's measurement, re-implemented: GX 11 expectations vs plain pandas."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    bd = ctx.data_sources.add_pandas("p").add_dataframe_asset("ann").add_batch_definition_whole_dataframe("all")
    suite = gx.ExpectationSuite("qa")
    E = gx.expectations
    for c in ["item_id", "annotator_id", "label", "x", "y", "w", "h"]:
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=c))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="label", value_set=["car", "person", "sign", "bike"]))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=640))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="w", min_value=0, strict_min=True))
    suite.add_expectation(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="img_w", column_B="x"))
    suite = ctx.suites.add(suite)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="v", data=bd, suite=suite))
    t = time.perf_counter()
    vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    gx_t = time.perf_counter() - t
    t = time.perf_counter()
    ok = [df[c].notna().all() for c in ["item_id", "annotator_id", "label", "x", "y", "w", "h"]]
    ok.append(df.label.isin(["car", "person", "sign", "bike"]).all()); ok.append(df.x.between(0, 640).all())
    ok.append((df.w > 0).all()); ok.append((df.img_w > df.x).all())
    return gx_t, time.perf_counter() - t


ANCHOR_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "gx_1m_rows.py"


def run_anchor_script() -> float | None:
    """The anchor script as shipped, in a fresh process: its own "gx validate" figure (or None
    when the script is not beside the checkout). Confirms the re-implementation above."""
    if not ANCHOR_SCRIPT.exists():
        return None
    out = subprocess.run([sys.executable, str(ANCHOR_SCRIPT)], capture_output=True, text=True,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "false"}, timeout=600).stdout
    found = re.search(r"gx validate ([0-9.]+)s", out)
    return float(found.group(1)) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each; best and median are reported")
    args = parser.parse_args()
    import great_expectations as gx

    from annotation_pipeline.qa.check_columns import derive_check_columns
    from annotation_pipeline.qa.outcomes import QAThresholds
    from annotation_pipeline.qa.row_suite import row_rules, validate_annotations

    print(f"pandas {pd.__version__}, great_expectations {gx.__version__}, numpy {np.__version__}, "
          f"shapely {shapely.__version__}")
    script_before = run_anchor_script()
    ontology = load_ontology()
    annotations, tasks = synthetic_batch(args.rows)
    print(f"rows {len(annotations):,}  tasks {len(tasks):,}  cores {os.cpu_count()}  "
          f"peak RSS after generating data {peak_rss_gb():.2f} GB")

    anchor_df = anchor_frame(1_000_000)
    # Warm-up, one full untimed run of each: first-call imports and caches, and this VM's
    # first touch of memory it never used before (seen: 256 MB took 527 ms the first time,
    # 20 ms after), which would otherwise land on whichever side runs first.
    validate_annotations(annotations, tasks, ontology)
    run_anchor(anchor_df)
    # Ours and the anchor alternate, so a change of machine speed between minutes (seen
    # here: the anchor alone from 0.26 to 1.12 s) hits both sides of each ratio alike.
    ours, derive, pandas_same, anchor_runs = [], [], [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = validate_annotations(annotations, tasks, ontology)
        ours.append(time.perf_counter() - t)
        anchor_runs.append(run_anchor(anchor_df))
        t = time.perf_counter()
        checks = derive_check_columns(annotations, tasks, ontology)
        derive.append(time.perf_counter() - t)
        masks = [rule.failing(checks) for rule in row_rules(ontology, QAThresholds())]
        bad = np.logical_or.reduce(masks)
        pandas_same.append(time.perf_counter() - t)
        del checks
    peak = peak_rss_gb()
    script_after = run_anchor_script()
    assert int(bad.sum()) == result.n_quarantined
    for o in result.expectations:
        assert o.unexpected_count == o.quarantined_count, o
    gx_part = min(ours) - min(derive)
    anchor_gx, anchor_pd = min(r[0] for r in anchor_runs), min(r[1] for r in anchor_runs)
    pair_ratios = [o / a[0] for o, a in zip(ours, anchor_runs)]

    print(f"ours: validate_annotations (16 expectations, GX + quarantine) {min(ours):.2f} s "
          f"[derive columns {min(derive):.2f} s, GX + split {gx_part:.2f} s]  "
          f"quarantined {result.n_quarantined:,} / {len(annotations):,}")
    print(f"plain pandas, same 16 checks on the same rows             {min(pandas_same):.2f} s  "
          f"ratio ours/pandas {min(ours) / min(pandas_same):.1f}x")
    print(f"anchor re-implemented: GX 11 expectations on 1M rows      {anchor_gx:.2f} s, pandas {anchor_pd:.3f} s, "
          f"ratio {anchor_gx / anchor_pd:.0f}x")
    print(f"ours / anchor GX: best {min(ours) / anchor_gx:.2f}x, per alternating pair "
          f"{' '.join(f'{r:.2f}' for r in pair_ratios)} (median {float(np.median(pair_ratios)):.2f}x); "
          f"target 5 s at the quoted 1.21 s = {5 / 1.21:.2f}x (16 vs 11 expectations, geometry + duplicates derived)")
    print("runs, s: ours " + " ".join(f"{x:.2f}" for x in ours) + " | anchor GX "
          + " ".join(f"{a[0]:.2f}" for a in anchor_runs))
    if script_before is not None:
        print(f"anchor script as shipped, fresh process (cold, one run): gx validate {script_before:.2f} s before, "
              f"{script_after:.2f} s after the runs above; quoted 1.21 s")
    print(f"peak RSS (whole process, data included) {peak:.2f} GB; target <= 2.5 GB; "
          f"validation target <= 5 s: {'met' if min(ours) <= 5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
