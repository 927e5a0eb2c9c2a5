"""A day's partition launched as the UI launches it, beside the demo's in-process run.

Run: python benchmarks/bench_ui_run.py [--images 40] [--repeats 2] [--multiprocess]

Each variant is a fresh process on the same prepared data root (sample day + gold set + a
trained model), so imports and code-location loading count for all of them:
  demo         ``annotation-pipeline demo``: ``execute_in_process`` (the anchor)
  ui           ``dagster job execute -m annotation_pipeline.definitions -j annotation_lifecycle``:
               what the UI's run launcher does (a new process loads the code location and runs
               the job with its own executor: the local profile's in-process executor)
  multiprocess the same with Dagster's default multiprocess executor (a process per step),
               the executor the local profile had before (``--multiprocess``)
Variants alternate (demo, ui[, multiprocess]) ``--repeats`` times; the headline is the ratio of
the medians ui / demo. Target (issue 12): <= 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DAY = "2026-11-21"
SECRET = "demo-only-key-for-generated-sample-data-0123456789"  # the demo's public key: generated data only


def multiprocess_definitions():
    """The code location with Dagster's default executor (a process per step)."""
    import dagster as dg

    from annotation_pipeline.definitions import STAGES
    from annotation_pipeline.defs.resources import build_resources

    return dg.Definitions.merge(*(stage.defs for stage in STAGES),
                                dg.Definitions(resources=build_resources("local"), executor=dg.multiprocess_executor))


if os.environ.get("BENCH_UI_RUN_LOAD_DEFS") == "1":  # only when Dagster loads this file as a code location
    multiprocess_defs = multiprocess_definitions()


def prepare(root: Path, images: int) -> dict:
    env = {**os.environ, "ANNOTATION_PIPELINE_ROOT": str(root), "DAGSTER_HOME": str(root / "dagster_home"),
           "ANNOTATION_PIPELINE_PSEUDONYM_SECRET": SECRET, "ANNOTATION_PIPELINE_PROFILE": "local",
           "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "GX_ANALYTICS_ENABLED": "false",
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    home = root / "dagster_home"  # one SQLite instance for every variant, as `dagster dev` on the demo's root
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # the demo generates the day, the gold set and the model once; the timed runs reuse them
    subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root), "--images",
                    str(images), "--date", DAY, "--json"], env=env, cwd=REPO, check=True, capture_output=True)
    return env


def variant_command(name: str) -> list[str]:
    bin_dir = Path(sys.executable).parent
    if name == "demo":
        return [sys.executable, "-m", "annotation_pipeline.cli", "demo", "--date", DAY, "--json"]
    tags = json.dumps({"dagster/partition": DAY})
    target = (["-m", "annotation_pipeline.definitions", "-a", "defs"] if name == "ui"
              else ["-f", str(Path(__file__).resolve()), "-a", "multiprocess_defs"])
    return [str(bin_dir / "dagster"), "job", "execute", *target, "-j", "annotation_lifecycle", "--tags", tags]


def time_variant(name: str, env: dict) -> float:
    env = {**env, "BENCH_UI_RUN_LOAD_DEFS": "1" if name == "multiprocess" else "0"}
    start = time.perf_counter()
    out = subprocess.run(variant_command(name), env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--multiprocess", action="store_true", help="also time the multiprocess executor")
    parser.add_argument("--root", default="/tmp/bench-ui-run")
    args = parser.parse_args()
    root = Path(args.root)
    t0 = time.perf_counter()
    env = prepare(root, args.images)
    print(f"prepared {root} ({args.images} images, model trained) in {time.perf_counter() - t0:.1f}s; "
          f"load average {os.getloadavg()[0]:.1f}")
    names = ["demo", "ui"] + (["multiprocess"] if args.multiprocess else [])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in names:
            times[name].append(time_variant(name, env))
            print(f"  run {r + 1} {name:<13} {times[name][-1]:7.1f} s")
    medians = {n: statistics.median(t) for n, t in times.items()}
    print(f"{'variant':<13} {'median s':>9}  runs")
    for name in names:
        print(f"{name:<13} {medians[name]:9.1f}  {', '.join(f'{t:.1f}' for t in times[name])}")
    ratio = medians["ui"] / medians["demo"]
    print(f"ui / demo = {ratio:.2f} (target <= 2: {'met' if ratio <= 2 else 'NOT met'})"
          + (f"; multiprocess / demo = {medians['multiprocess'] / medians['demo']:.2f}" if args.multiprocess else ""))
    print(json.dumps({"medians_s": medians, "ui_over_demo": round(ratio, 3), "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
