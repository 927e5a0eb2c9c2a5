"""One partition at volume: vendor return files to a released dataset, stage by stage.

Run: python benchmarks/bench_scale.py [--annotations N [N ...]] [--profile local|production|both] [--json]

From Label Studio JSON exports in a vendor inbox (generated once per N by the simulated
workforce and cached under --cache), each stage calls the functions the assets call:
  collect      production only: the batch's return files downloaded from the S3 inbox
               (S3Vendor.collect_returns, as the intake asset does)
  intake       vendor.intake.intake_vendor_returns: parse, map to the contract, quarantine bad rows
  qa           qa.row_suite.validate_annotations (the Great Expectations row suite) and
               qa.batch_health.batch_health, as vendor.returns.process_vendor_returns calls them
  consensus    consensus.stage.run_consensus: scenes, IoU clusters, agreement, review queue
  scorecards   qa.scorecards.annotator_scorecards
  release      what the dataset_release asset calls: build_provenance, DvcReleaseStore.release_partition
               (merge, quality report, exports and HTML report, dvc add + push to the profile's remote)
  tables       every table the assets hand on (returned annotations, quarantine, consensus labels,
               review queue, agreement, scorecards) written and read back through the profile's
               table store: Parquet under the root (local) or objects in S3 (production)
The production profile runs against a moto S3 server started as its own process on loopback
(``moto_server``), so the server's CPU is not charged to the stages' Python thread.

Each (N, profile) runs in a fresh process: wall time and peak RSS per stage (RSS sampled every
10 ms), total wall time and the process's peak RSS. With several N, each stage's growth
exponent is the slope of log(time) on log(N). With --json, the last line is one JSON object
for the largest N (local profile): total_s, peak_gb, and per-stage figures.
Target (issue 12): 1M annotations in <= 60 s and <= 4 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import pandas as pd

DAY = "2026-11-21"
VENDOR = "simvendor"
ANSWERS_PER_TASK = 3          # overlap k
ANNOTATIONS_PER_ANSWER = 3.3  # one scene choice + ~2.3 objects, as the sample world's images


class PeakRss:
    """Peak resident memory of this process while a block runs (sampled every 10 ms)."""

    _page = os.sysconf("SC_PAGE_SIZE")

    def __init__(self):
        self.peak = 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.01)

    def __enter__(self):
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def generate_returns(n_annotations: int, folder: Path, seed: int = 0) -> dict:
    """Tasks, truth and the simulated workforce's Label Studio exports for ~n annotations."""
    from annotation_pipeline.contracts import VENDOR_TASKS
    from annotation_pipeline.ontology import load_ontology
    from annotation_pipeline.sample_world.sample_data import load_sample_settings
    from annotation_pipeline.sample_world.workforce import AnnotatorProfile, simulate_answers

    rng = np.random.default_rng(seed)
    ontology = load_ontology()
    profiles = [AnnotatorProfile.from_dict(p) for p in load_sample_settings()["vendor"]["annotators"]]
    n_tasks = max(10, round(n_annotations / ANSWERS_PER_TASK / ANNOTATIONS_PER_ANSWER))
    batch_id = f"{VENDOR}-{DAY}-scale{n_annotations}"
    ids = np.char.add("item", np.arange(n_tasks).astype(str)).astype(object)
    files = np.char.add(np.arange(n_tasks).astype(str), ".png").astype(object)
    w, h = 640.0, 480.0
    tasks = VENDOR_TASKS.conform(pd.DataFrame({
        "batch_id": batch_id, "task_id": np.arange(1, n_tasks + 1).astype(str), "item_id": ids, "is_gold": False,
        "vendor": VENDOR, "image_file": files, "image_width": w, "image_height": h, "overlap": ANSWERS_PER_TASK,
        "ontology_version": ontology.version, "guidelines_version": "1.0.0", "model_version": "scale-bench"}))
    scenes = pd.DataFrame({"image_file": files, "kind": "choice",
                           "label": np.asarray(ontology.scene_classes, dtype=object)[
                               rng.integers(0, len(ontology.scene_classes), n_tasks)]})
    # ~2.3 objects per image, boxes only: simulate_answers jitters them like people do
    box_classes = np.asarray([c for c, g in ontology.object_geometry.items() if g == "box"], dtype=object)
    per_image = rng.poisson(2.3, n_tasks)
    owner = np.repeat(np.arange(n_tasks), per_image)
    x0, y0 = rng.uniform(0, 520, len(owner)), rng.uniform(0, 380, len(owner))
    size = rng.uniform(25, 110, len(owner))
    objects = pd.DataFrame({"image_file": files[owner], "kind": "box",
                            "label": box_classes[rng.integers(0, len(box_classes), len(owner))],
                            "x_min": x0, "y_min": y0, "x_max": np.minimum(x0 + size, w),
                            "y_max": np.minimum(y0 + size * 0.8, h), "geometry_wkb": None})
    truth = pd.concat([scenes, objects], ignore_index=True)
    answers = simulate_answers(tasks, truth, profiles, ANSWERS_PER_TASK, list(ontology.scene_classes),
                               ontology.object_geometry, seed=seed)
    inbox = folder / "inbox"
    write_label_studio_exports_fast(answers, tasks, profiles, inbox / batch_id, VENDOR)
    tasks.to_parquet(folder / "tasks.parquet", index=False)
    raw = pd.DataFrame({"item_id": ids, "partition_date": DAY, "source_file": files,
                        "raw_path": np.char.add(f"raw/{DAY}/", files.astype(str)).astype(object)})
    raw.to_parquet(folder / "raw_items.parquet", index=False)
    meta = {"n_annotations": len(answers), "n_tasks": n_tasks, "batch_id": batch_id}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def _fmt(values) -> pd.Series:
    return pd.Series(np.round(np.asarray(values, dtype=float), 4)).astype(str)


def write_label_studio_exports_fast(answers: pd.DataFrame, tasks: pd.DataFrame, profiles, inbox: Path,
                                    vendor: str) -> None:
    """The JSON the simulated workforce writes (sample_world.workforce.write_label_studio_exports,
    one export per annotator), built with column string operations: its per-task loop is fine for a
    demo day and takes an hour for a million answers on this machine. Boxes and choices only."""
    from annotation_pipeline.sample_world.workforce import SCENE_FROM_NAME

    size = tasks.set_index("task_id")[["image_width", "image_height", "image_file"]]
    a = answers[answers["kind"].isin(["choice", "box"])].reset_index(drop=True)
    w, h = size["image_width"].reindex(a["task_id"]).to_numpy(), size["image_height"].reindex(a["task_id"]).to_numpy()
    rid = '"r' + a.groupby(["ann", "task_id"], sort=False).cumcount().astype(str) + '"'
    label = a["label"].astype(str)
    choice = ('{"id":' + rid + f',"from_name":"{SCENE_FROM_NAME}","to_name":"image","type":"choices",'
              '"value":{"choices":["' + label + '"]}}')
    geometry = (',"original_width":' + pd.Series(w.astype(int)).astype(str) + ',"original_height":'
                + pd.Series(h.astype(int)).astype(str) + ',"image_rotation":0')
    box = ('{"id":' + rid + ',"from_name":"objects","to_name":"image","type":"rectanglelabels"' + geometry
           + ',"value":{"x":' + _fmt(100 * a["x_min"] / w) + ',"y":' + _fmt(100 * a["y_min"] / h)
           + ',"width":' + _fmt(100 * (a["x_max"] - a["x_min"]) / w) + ',"height":'
           + _fmt(100 * (a["y_max"] - a["y_min"]) / h) + ',"rotation":0,"rectanglelabels":["' + label + '"]}}')
    a["result"] = np.where(a["kind"] == "choice", choice, box)
    per_task = a.groupby(["ann", "task_id"], sort=False).agg(result=("result", ",".join),
                                                             lead_time=("lead_time", "first")).reset_index()
    task_num = per_task["task_id"].astype(int)
    ann = per_task["ann"].astype(int)
    emails = pd.Series([f"{p.id}@{vendor}.example" for p in profiles])
    per_task["json"] = ('{"id":' + task_num.astype(str) + ',"data":{"image":"images/'
                        + size["image_file"].reindex(per_task["task_id"]).astype(str).to_numpy() + '"},'
                        + '"annotations":[{"id":' + (task_num * 100 + ann).astype(str) + ',"completed_by":{"id":'
                        + (ann + 1).astype(str) + ',"email":"' + emails.reindex(ann).to_numpy() + '"},"lead_time":'
                        + _fmt(per_task["lead_time"].round(2)) + ',"result":[' + per_task["result"] + ']}]}')
    inbox.mkdir(parents=True, exist_ok=True)
    for index, mine in per_task.groupby("ann", sort=True):
        (inbox / f"{profiles[int(index)].id}.json").write_text("[\n" + ",\n".join(mine["json"]) + "\n]")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (dvc, git): on a shared machine
    wall time includes waiting for a core, CPU time does not."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Stages:
    """Wall time, CPU time and peak memory per stage."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def run(self, name: str, fn):
        with PeakRss() as rss:
            start, cpu = time.perf_counter(), cpu_seconds()
            out = fn()
            elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        row = self.rows.setdefault(name, {"s": 0.0, "cpu_s": 0.0, "peak_gb": 0.0})
        row["s"] += elapsed
        row["cpu_s"] += cpu
        row["peak_gb"] = max(row["peak_gb"], rss.peak / 1024 ** 3)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def run_once(cache: Path, n: int, profile: str, work: Path) -> dict:
    """The chain for one N on one profile, in this process.

    Longer than our usual function: it is the lifecycle's order of steps written out once, each
    stage timed where the assets hand over, and splitting it would hide that order."""
    from annotation_pipeline.consensus.stage import run_consensus
    from annotation_pipeline.contracts import GOLD_LABELS, QUARANTINE
    from annotation_pipeline.defs.resources import LocalTableStore, S3TableStore, S3Vendor, table_key
    from annotation_pipeline.ontology import load_ontology
    from annotation_pipeline.qa.batch_health import batch_health
    from annotation_pipeline.qa.outcomes import QAThresholds
    from annotation_pipeline.qa.row_suite import validate_annotations
    from annotation_pipeline.qa.scorecards import annotator_scorecards
    from annotation_pipeline.release.evidence import changes_since, release_attachments, release_images
    from annotation_pipeline.release.report import build_provenance, build_quality_report
    from annotation_pipeline.release.store import DvcReleaseStore
    from annotation_pipeline.vendor.intake import intake_vendor_returns

    meta = json.loads((cache / "meta.json").read_text())
    tasks, raw_items = pd.read_parquet(cache / "tasks.parquet"), pd.read_parquet(cache / "raw_items.parquet")
    batch_id, ontology, gold, thresholds = meta["batch_id"], load_ontology(), GOLD_LABELS.empty(), QAThresholds()
    # the anonymized images the release indexes (only their names and sizes are read)
    images = release_images(pd.DataFrame({"item_id": tasks["item_id"], "image_path": tasks["image_file"],
                                          "width": tasks["image_width"], "height": tasks["image_height"]}))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stages, moto = Stages(), None
    try:
        if profile == "production":
            from dagster_aws.s3 import S3Resource

            moto, endpoint = start_moto()
            for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                         "AWS_DEFAULT_REGION": "us-east-1"}.items():
                os.environ[k] = v
            s3 = S3Resource(endpoint_url=endpoint)
            client = s3.get_client()
            client.create_bucket(Bucket="bench")
            for path in sorted((cache / "inbox" / batch_id).glob("*.json")):  # the vendor's upload: not timed
                client.upload_file(str(path), "bench", f"vendors/{VENDOR}/inbox/{batch_id}/{path.name}")
            vendor = S3Vendor(vendor=VENDOR, bucket="bench", endpoint_url=endpoint, download_root=str(work / "root"))
            inbox, files = stages.run("collect", lambda: vendor.collect_returns(batch_id))
            store = S3TableStore(s3=s3, bucket="bench", prefix="pipeline")
            releases = DvcReleaseStore(work / "root", "s3://bench/dvc", endpoint_url=endpoint)
        else:
            inbox = cache / "inbox"
            files = sorted((inbox / batch_id).glob("*.json"))
            store = LocalTableStore(base_path=str(work / "root"))
            releases = DvcReleaseStore(work / "root", str(work / "dvc-remote"))

        def handoff(asset: str, df: pd.DataFrame) -> pd.DataFrame:
            """An asset's table to the next step: written by one, read by the other."""
            key = table_key([asset], DAY)
            stages.run("tables", lambda: store.write_table(key, df))
            return stages.run("tables", lambda: store.read_table(key))

        intake = stages.run("intake", lambda: intake_vendor_returns(
            files, inbox, tasks, ontology.raw, vendor=VENDOR, already_ingested_sha256=set(), partition_date=DAY))
        received = int(intake.files["n_received"].sum())

        def qa():
            validation = validate_annotations(intake.annotations, tasks, ontology.raw, thresholds=thresholds,
                                              partition_date=DAY, docs_dir=work / "data_docs",
                                              run_name=f"returned_annotations-{DAY}")
            quarantine = QUARANTINE.conform(pd.concat([intake.quarantine, validation.quarantined], ignore_index=True))
            health = batch_health(validation.accepted, quarantine, received, tasks, gold, ontology.raw,
                                  thresholds=thresholds, docs_dir=work / "data_docs", run_name=f"batch_health-{DAY}")
            return validation.accepted, quarantine, health

        accepted, quarantine, _ = stages.run("qa", qa)
        accepted, quarantine = handoff("returned_annotations", accepted), handoff("quarantine", quarantine)
        batches = handoff("vendor_batches", tasks)
        result = stages.run("consensus", lambda: run_consensus(accepted, batches, gold))
        labels = handoff("consensus_labels", result.labels)
        review, agreement = handoff("review_queue", result.review_queue), handoff("agreement_metrics", result.agreement)
        cards = stages.run("scorecards", lambda: annotator_scorecards(accepted, quarantine, batches, gold,
                                                                     consensus_labels=labels))
        cards = handoff("annotator_scorecards", cards)

        def release():  # as the dataset_release asset does it
            def report_for(dataset, parent_labels):
                return {**build_quality_report(dataset, DAY, labels, review, agreement, cards, quarantine),
                        **changes_since(parent_labels, dataset)}

            def attachments(report, dataset, index):
                return release_attachments(report, dataset, index, ontology, agreement=agreement, scorecards=cards,
                                           answers=accepted, gold=gold, quarantine=quarantine)

            return releases.release_partition(DAY, labels, build_provenance(labels, accepted, raw_items), report_for,
                                              {"ontology": ontology.version}, day_images=images,
                                              attachments=attachments)

        info = stages.run("release", release)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
    total = sum(r["s"] for r in stages.rows.values())
    return {"n_annotations": int(received), "profile": profile, "total_s": round(total, 3),
            "cpu_s": round(sum(r["cpu_s"] for r in stages.rows.values()), 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "peak_gb": round(max(r["peak_gb"] for r in stages.rows.values()), 3),
            "accepted": len(accepted), "quarantined": len(quarantine), "labels": int(info.n_labels),
            "stages": {k: {key: round(value, 3) for key, value in v.items()} for k, v in stages.rows.items()}}


def child(args) -> None:
    n, profile = args.annotations[0], args.profile
    cache = Path(args.cache) / f"n{n}"
    if not (cache / "meta.json").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        generate_returns(n, cache)
    print(json.dumps(run_once(cache, n, profile, Path(args.cache) / f"work-{profile}-n{n}")))


def exponent(sizes: list[int], times: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(times, 1e-4)), 1)[0]) if len(sizes) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--profile", choices=["local", "production", "both"], default="both")
    parser.add_argument("--cache", default="/tmp/bench-scale")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    profiles = ["local", "production"] if args.profile == "both" else [args.profile]
    results: dict[tuple[int, str], dict] = {}
    for n in sorted(args.annotations):
        for profile in profiles:  # a fresh process each: its own peak memory
            out = subprocess.run([sys.executable, __file__, "--child", "--annotations", str(n), "--profile", profile,
                                  "--cache", args.cache], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"N={n} {profile} failed:\n{out.stderr[-3000:]}")
            results[(n, profile)] = json.loads(out.stdout.strip().splitlines()[-1])
    stage_names = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    header = f"{'annotations':>11} {'profile':<10} " + " ".join(f"{s:>22}" for s in stage_names) + \
        f" {'total s':>8} {'CPU s':>8} {'peak GB':>8} {'load':>5}"
    print(header + "\n" + " " * 23 + " ".join(f"{'s / CPU s / peak GB':>22}" for _ in stage_names))
    for (n, profile), r in results.items():
        cells = [f"{r['stages'][s]['s']:7.2f} /{r['stages'][s]['cpu_s']:6.2f} /{r['stages'][s]['peak_gb']:5.2f}"
                 if s in r["stages"] else f"{'-':>22}" for s in stage_names]
        print(f"{r['n_annotations']:>11,} {profile:<10} " + " ".join(cells)
              + f" {r['total_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_gb']:8.2f} {r['load_avg_1m']:5.1f}")
    sizes = sorted(args.annotations)
    for profile in profiles:
        exps = {s: exponent([results[(n, profile)]["n_annotations"] for n in sizes],
                            [results[(n, profile)]["stages"].get(s, {}).get("s", 0.0) for n in sizes])
                for s in stage_names if s in results[(sizes[-1], profile)]["stages"]}
        exps["total"] = exponent([results[(n, profile)]["n_annotations"] for n in sizes],
                                 [results[(n, profile)]["total_s"] for n in sizes])
        print(f"growth exponent ({profile}): " + "  ".join(f"{k} {v:.2f}" for k, v in exps.items()))
    top = results[(sizes[-1], profiles[0])]
    verdict = top["total_s"] <= 60 and top["peak_gb"] <= 4
    print(f"{top['n_annotations']:,} annotations ({profiles[0]}): {top['total_s']:.1f} s, peak {top['peak_gb']:.2f} GB "
          f"-> target <= 60 s and <= 4 GB {'met' if verdict else 'NOT met'}")
    if args.json:
        print(json.dumps({**top, "by_profile": {p: results[(sizes[-1], p)] for p in profiles}}))


if __name__ == "__main__":
    main()
