"""The whole lifecycle through Dagster on a temp root: the promises of the `demo` command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.cli.main import main
from annotation_pipeline.contracts import ANNOTATIONS, CONSENSUS_LABELS, QUARANTINE, RAW_ITEMS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]  # one worker builds the demo once
DATE = "2026-11-20"
SECRET = "test-secret-4f1c9a7e2b8d6053-never-print-me"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    old = {k: os.environ.get(k) for k in ("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", "DAGSTER_HOME")}
    os.environ["ANNOTATION_PIPELINE_PSEUDONYM_SECRET"] = SECRET
    os.environ.pop("DAGSTER_HOME", None)
    outputs = []
    try:
        for _ in range(2):  # the second run must change nothing the first made right
            proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root),
                                   "--images", "24", "--date", DATE, "--json"],
                                  capture_output=True, text=True, timeout=600)
            outputs.append(proc)
            assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return root, [json.loads(p.stdout) for p in outputs], outputs


def table(root: Path, asset: str) -> pd.DataFrame:
    return pd.read_parquet(root / "tables" / asset / f"{DATE}.parquet")


def accepted_originals(root: Path) -> pd.DataFrame:
    """Original names and sidecars of the accepted uploads: only the restricted store has them."""
    from annotation_pipeline.layout import DataLayout

    originals = pd.read_parquet(DataLayout(root).landing_originals(DATE))
    return originals[originals["outcome"] == "accepted"]


def test_demo_ends_with_a_dvc_release_on_disk(demo_run):
    root, (first, _), _ = demo_run
    assert first["success"] and first["release"]["version"] == "v0001" and first["release"]["new_release"]
    release = root / "releases" / "v0001"
    assert (root / "releases" / "v0001.dvc").exists()
    labels = pd.read_parquet(release / "labels.parquet")
    assert len(labels) == first["release"]["labels"] > 0
    assert set(labels["kind"]) >= {"choice", "box"}
    assert any((root / "dvc-remote").rglob("*.dir"))  # pushed to the DVC remote


def test_counts_reconcile_at_every_stage(demo_run):
    root, (first, _), _ = demo_run
    for stage in ("items", "anonymized", "annotations"):
        c = first[stage]
        assert c["received"] == c["accepted"] + c["quarantined"] + (c.get("duplicates") or 0), stage
    assert first["items"]["duplicates"] >= 1 and first["items"]["quarantined"] == 2  # sample has both
    RAW_ITEMS.validate(table(root, "raw_items"))
    ANNOTATIONS.validate(table(root, "returned_annotations"))
    CONSENSUS_LABELS.validate(table(root, "consensus_labels"))
    q = QUARANTINE.conform(table(root, "quarantine"))
    assert set(q["stage"]) >= {"ingestion"}
    assert len(q[q["stage"] == "ingestion"]) == first["items"]["quarantined"]


def test_every_stage_writes_its_table_to_contract(demo_run):
    from annotation_pipeline import contracts as c

    root, _, _ = demo_run
    by_asset = {"raw_items": c.RAW_ITEMS, "anonymized_items": c.ANONYMIZED_ITEMS, "redaction_log": c.REDACTION_LOG,
                "prelabels": c.PRELABELS, "labeling_queue": c.LABELING_QUEUE, "vendor_batches": c.VENDOR_TASKS,
                "returned_annotations": c.ANNOTATIONS, "quarantine": c.QUARANTINE,
                "consensus_labels": c.CONSENSUS_LABELS, "review_queue": c.REVIEW_QUEUE,
                "agreement_metrics": c.AGREEMENT_METRICS, "vendor_scorecards": c.VENDOR_SCORECARDS,
                "review_tasks": c.REVIEW_TASKS, "review_decisions": c.REVIEW_DECISIONS,
                "reviewer_accuracy": c.REVIEWER_ACCURACY}
    for asset, contract in by_asset.items():
        df = table(root, asset)
        assert len(df), asset
        contract.validate(df)


def test_hidden_gold_tasks_carry_held_out_prelabels_like_every_other_task(demo_run):
    """A gold task without a pre-label would be the one task in the batch without one."""
    root, (first, _), _ = demo_run
    batch_id = first["handoff"]["batch_id"]
    tasks = json.loads((root / "vendors" / "simvendor" / "outbox" / batch_id / "tasks.json").read_text())
    assert tasks and all(t.get("predictions") for t in tasks)
    assert len({p["model_version"] for t in tasks for p in t["predictions"]}) == 1
    private = table(root, "vendor_batches")
    gold = set(private.loc[private["is_gold"] & (private["batch_id"] == batch_id), "item_id"])
    held_out = pd.read_parquet(root / "models" / "gold_prelabels.parquet")
    assert gold and gold <= set(held_out["item_id"])  # each predicted by a model that did not learn it


def test_a_second_demo_run_changes_nothing(demo_run):
    root, (first, second), _ = demo_run
    assert second["release"]["version"] == first["release"]["version"]
    assert second["release"]["new_release"] is False
    assert len(list((root / "releases").glob("v*.dvc"))) == 1
    assert second["handoff"]["batch_id"] == first["handoff"]["batch_id"]
    assert len(list((root / "vendors" / "simvendor" / "outbox").iterdir())) == 1
    assert second["annotations"] == first["annotations"]
    labels = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    assert not labels.duplicated(["item_id", "kind", "label", "x_min", "y_min"]).any()
    # the printout of the rerun is byte-identical, nothing excluded (it once printed rework 1.1 % then 3.5 %);
    # of --json only the run's id and whether this run made the release may differ
    from annotation_pipeline.cli.lifecycle import _render_demo

    assert _render_demo(second) == _render_demo(first)
    strip = lambda s: {**s, "run_id": None, "release": {**s["release"], "new_release": None}}  # noqa: E731
    assert strip(second) == strip(first)


def test_the_demo_names_the_checks_that_did_not_pass_and_gives_turnaround_its_unit(demo_run):
    _, (first, _), _ = demo_run
    from annotation_pipeline.cli.lifecycle import _render_demo

    text = _render_demo(first)
    failed = sorted(n for n, c in first["checks"].items() if not c["passed"])
    line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("checks"))
    assert all(name in line for name in failed) and ("not passed" in line) == bool(failed)
    vendor_row = text.splitlines()[text.splitlines().index(next(ln for ln in text.splitlines() if "turnaround" in ln)) + 1]
    assert " h " in vendor_row


def test_only_anonymized_data_reaches_the_vendor(demo_run):
    """Canary: the personal data the generator seeded never appears in the vendor outbox."""
    root, _, _ = demo_run
    raw = accepted_originals(root)
    canaries = set()
    for meta in raw["metadata_json"]:
        m = json.loads(meta)
        canaries |= {m["operator"]["name"], m["operator"]["email"], m["operator"]["phone"],
                     m["customer"]["iban"], m["customer"]["card"], m["customer"]["national_id"],
                     m["device_ip"], m["location"]["address"], m["operator"]["name"].split()[1]}
    outbox = root / "vendors" / "simvendor" / "outbox"
    files = [p for p in outbox.rglob("*") if p.is_file()]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    hits = [c for c in canaries if c.encode() in blob]
    assert hits == []
    from PIL import Image

    images = [p for p in outbox.rglob("*") if p.suffix in (".png", ".jpg")]
    assert images
    for image in images:
        with Image.open(image) as img:
            assert not img.getexif() and not img.info.get("exif") and "xmp" not in img.info
    raw_ids = set(raw["item_id"])
    assert not any(i.encode() in (outbox.glob("*/tasks.json").__next__()).read_bytes() for i in raw_ids)


def test_the_secret_never_reaches_files_or_output(demo_run):
    root, _, procs = demo_run
    for proc in procs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
    needle = SECRET.encode()
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert needle not in path.read_bytes(), path


def test_releases_and_trace_answer_an_auditor(demo_run, capsys):
    root, _, _ = demo_run
    assert main(["releases", "--root", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["releases"]
    assert [r["version"] for r in listed] == ["v0001"]
    labels = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    item = labels.loc[labels["kind"] == "box", "item_id"].iloc[0]
    assert main(["trace", item, "--root", str(root), "--json"]) == 0
    trace = json.loads(capsys.readouterr().out)
    assert trace["raw_item"] and trace["raw_item"][0]["raw_path"].startswith("raw/")
    answers = {a["annotation_id"] for a in trace["vendor_answers"]}
    released_ids = set(" ".join(labels.loc[labels["item_id"] == item, "annotation_ids"]).split())
    assert answers == released_ids
    assert all(a["source_sha256"] for a in trace["vendor_answers"])
    assert trace["problems_with_release_files"] == []
    assert main(["trace", "no-such-item", "--root", str(root)]) == 1
    assert "no label" in capsys.readouterr().err


def test_trace_shows_every_hop_as_strict_json_for_an_item_with_a_quarantined_answer(demo_run):
    root, _, _ = demo_run
    labels = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    quarantine = table(root, "quarantine")
    quarantined = quarantine[quarantine["stage"].isin(["intake", "qa"]) & quarantine["item_id"].notna()]
    candidates = sorted(set(quarantined["item_id"]) & set(labels["item_id"]))
    assert candidates, "the demo day quarantines answers on released items"
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "trace", candidates[0], "--root", str(root),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trace = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert trace["raw_item"][0]["content_hash_matches"] is True
    assert trace["redactions"] is not None and trace["prelabels"] and trace["model_versions"]
    assert trace["batches"] and trace["batches"][0]["batch_id"]
    outcomes = {a["qa_outcome"] for a in trace["answers"]}
    assert "accepted" in outcomes and any(o.startswith("quarantined: ") for o in outcomes)
    for hop in ("answers_not_used", "review", "review_decisions", "labels", "releases_containing_item"):
        assert hop in trace
    assert trace["releases_containing_item"][0] == "v0001"
    assert {lbl["method"] for lbl in trace["labels"]} and all(lbl["confidence"] is not None for lbl in trace["labels"])


def test_trace_holds_every_hop_as_strict_json_for_an_item_with_a_quarantined_answer_and_a_review_decision(demo_run):
    """Issue 14's done-when: the simulated reviewer decided the demo's review tasks (queued candidates and an
    audit of labels on items that lost answers to quarantine), and the release applied the decisions."""
    root, (first, second), _ = demo_run
    assert first["review"]["accepted"] == first["review"]["received"] == first["review"]["tasks"] > 0
    assert first["review"]["quarantined"] == 0 and first["review"]["reviewer_accuracy"]
    assert first["review"]["reviewed_labels"] > 0 and second["review"] == first["review"]
    labels = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    decisions = table(root, "review_decisions")
    quarantine = table(root, "quarantine")
    quarantined = set(quarantine.loc[quarantine["stage"].isin(["intake", "qa"]), "item_id"].dropna())
    candidates = sorted(quarantined & set(decisions.loc[~decisions["is_gold"], "item_id"]) & set(labels["item_id"]))
    assert candidates, "the demo audits released labels of items that lost answers to quarantine"
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "trace", candidates[0], "--root", str(root),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trace = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert trace["raw_item"][0]["content_hash_matches"] is True and trace["prelabels"] and trace["model_versions"]
    assert trace["batches"] and any(a["qa_outcome"].startswith("quarantined: ") for a in trace["answers"])
    assert all(hop in trace for hop in ("redactions", "answers_not_used", "review", "vendor_answers"))
    decided = trace["review_decisions"]
    assert decided and all(d["reviewer_id"] and d["decided_at"] and d["decision"] in ("confirm", "override", "reject")
                           and d["reason"] for d in decided)
    applied = {d["decision_id"] for d in decided if not d["superseded"] and d["final_label"]}
    assert {lbl["review_decision_id"] for lbl in trace["labels"] if lbl["label_source"] == "review"} == applied
    assert all(lbl["method"] and lbl["confidence"] is not None for lbl in trace["labels"])
    assert trace["releases_containing_item"][0] == "v0001"


def test_the_vendor_side_never_imports_the_raw_store():
    code = ("import sys; import annotation_pipeline.vendor.handoff, annotation_pipeline.vendor.intake, "
            "annotation_pipeline.sample_world.workforce; "
            "bad=[m for m in ('annotation_pipeline.ingestion.landing','annotation_pipeline.anonymization.items') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_the_face_in_the_shipped_photo_is_blurred_in_the_outbox(demo_run):
    import cv2
    import numpy as np
    from PIL import Image

    root, (first, _), _ = demo_run
    raw = table(root, "raw_items").merge(accepted_originals(root)[["item_id", "source_file"]], on="item_id")
    astronaut = raw[raw["source_file"] == "photo_astronaut.jpg"].iloc[0]
    tasks = pd.read_parquet(root / "handoff" / first["handoff"]["batch_id"] / "tasks.parquet")
    shipped = tasks.loc[tasks["item_id"] == astronaut["item_id"], "image_file"]
    assert len(shipped) == 1  # the demo's budget (500) covers every item, the photo included
    outbox = root / "vendors" / "simvendor" / "outbox" / first["handoff"]["batch_id"] / "images" / shipped.iloc[0]
    before = np.asarray(Image.open(root / astronaut["raw_path"]).convert("L"))
    after = np.asarray(Image.open(outbox).convert("L"))
    # The face found by the anchor's own detector on the raw photo (skimage astronaut: one face).
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    (x, y, w, h), = cascade.detectMultiScale(before, 1.1, 5, minSize=(24, 24))
    sharp = cv2.Laplacian(before[y:y + h, x:x + w], cv2.CV_64F).var()
    blurred = cv2.Laplacian(after[y:y + h, x:x + w], cv2.CV_64F).var()
    assert blurred < sharp / 5
    assert len(cascade.detectMultiScale(after, 1.1, 5, minSize=(24, 24))) == 0


def test_the_demo_day_drifts_in_production_and_reruns_judge_it_the_same(demo_run):
    root, (first, second), _ = demo_run
    assert first["drift"]["drifted"] is True
    assert [labels for labels in first["drift"]["drifted_labels"].values()] == [["fog"]]
    assert second["drift"] == first["drift"]
    signals = table(root, "drift_signals")
    # Fog's share grew: the label mix drifts. The confidence KS is measured too, but a calibrated model is
    # about as sure of fog as of the other scenes, so it need not move (issue 15's isotonic calibration).
    assert set(signals["metric"]) == {"label_psi", "confidence_ks"}
    assert signals.loc[signals["metric"] == "label_psi", "drifted"].all()
    assert (root / "monitoring" / "predictions" / DATE / "serving.parquet").exists()


def test_a_drift_campaign_lands_images_that_the_next_day_labels_first(demo_run):
    from annotation_pipeline.monitoring.drift import run_campaign

    root, (first, _), _ = demo_run
    next_day = "2026-11-21"
    campaign = run_campaign(root, f"drift-{DATE}", budget=6, today=next_day)
    assert campaign.landing_dir == root / "landing" / next_day and len(campaign.items) == 6
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root),
                           "--images", "4", "--date", next_day, "--json"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ANNOTATION_PIPELINE_PSEUDONYM_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr[-3000:]
    queue = pd.read_parquet(root / "tables" / "labeling_queue" / f"{next_day}.parquet")
    assert queue["item_id"].head(6).tolist() == campaign.items["item_id"].tolist()
    assert queue["reason"].head(6).eq(f"relabel campaign drift-{DATE}").all()
    sent = pd.read_parquet(root / "tables" / "vendor_batches" / f"{next_day}.parquet")
    assert set(campaign.items["item_id"]) <= set(sent["item_id"])  # anonymized, then handed to the vendor


def test_diff_between_two_demo_days_lists_the_new_days_labels_as_added(demo_run):
    root, _, _ = demo_run
    next_day = "2026-11-21"
    if not (root / "tables" / "consensus_labels" / f"{next_day}.parquet").exists():
        proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "demo", "--root", str(root),
                               "--images", "4", "--date", next_day, "--json"], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "ANNOTATION_PIPELINE_PSEUDONYM_SECRET": SECRET})
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", "diff", "v0001", "v0002", "--root",
                           str(root), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    old = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    new = pd.read_parquet(root / "releases" / "v0002" / "labels.parquet")
    new_items = set(new["item_id"]) - set(old["item_id"])
    added = [c for c in out["changes"] if c["change"] == "added"]
    assert new_items and {c["item_id"] for c in added} >= new_items
    assert out["added"] + out["unchanged"] + out["changed"] == len(new)
    assert out["removed"] + out["unchanged"] + out["changed"] == len(old)


def test_the_release_carries_an_offline_report_exports_and_a_registry_tag(demo_run):
    from html.parser import HTMLParser

    root, (first, _), _ = demo_run
    release = root / "releases" / "v0001"
    urls = []

    class Links(HTMLParser):
        def handle_starttag(self, tag, attrs):
            assert tag not in ("script", "link", "iframe")
            urls.extend(v for k, v in attrs if k in ("src", "href") and v)

    Links().feed((release / "quality_report.html").read_text())
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
    coco = json.loads((release / "export_coco.json").read_text())
    labels = pd.read_parquet(release / "labels.parquet")
    assert len(coco["annotations"]) == len(labels) and len(coco["images"]) == labels["item_id"].nunique()
    assert len(json.loads((release / "export_label_studio.json").read_text())) == labels["item_id"].nunique()
    tags = subprocess.run(["git", "-C", str(root), "tag"], capture_output=True, text=True).stdout.split()
    assert "dataset-v0001" in tags
    report = json.loads((release / "quality_report.json").read_text())
    assert report["changes"]["added"] == len(labels) and report["changes"]["removed"] == 0


def test_the_demo_prints_the_vendor_figures_and_a_two_vendor_pilot(demo_run):
    root, (first, second), _ = demo_run
    (vendor,) = first["vendors"]
    assert vendor["vendor"] == "simvendor" and vendor["n_accepted"] == first["annotations"]["accepted"]
    assert 0 < vendor["cost_per_accepted_label"] < 1 and 0 <= vendor["rework_rate"] < 1
    assert vendor["gold_accuracy"] is not None and vendor["turnaround_hours"] is not None
    pilot = {r["vendor"]: r for r in first["pilot"]}
    assert set(pilot) == {"simvendor", "budgetlabels"} and pilot["simvendor"]["items"] == pilot["budgetlabels"]["items"]
    # the pilot vendor's price list is lower (sample_settings.json): cheaper per accepted label
    assert pilot["budgetlabels"]["cost_per_accepted_label"] < pilot["simvendor"]["cost_per_accepted_label"]
    assert second["pilot"] == first["pilot"]  # the pilot runs in a temporary folder, the same every time
    report = json.loads((root / "releases" / "v0001" / "quality_report.json").read_text())
    assert report["calibration"]["n_gold_items"] > 0 and 0 <= report["calibration"]["ece"] <= 1


def test_the_demo_reports_auto_accept_with_the_held_out_gold_evidence_behind_it(demo_run):
    """The sample world's 60 gold items give no class and band the 50 gold labels the 0.98 target needs:
    auto-accept stays off, says why with the best cell's numbers, and every item goes to the vendor."""
    root, (first, second), _ = demo_run
    auto = first["auto_accept"]
    assert auto["auto_accept"] == "off" and auto["labels_auto_accepted"] == 0
    assert "on at least 50 held-out gold labels (best: " in auto["reason"] and auto["target_precision"] == 0.98
    assert second["auto_accept"] == auto
    evidence = pd.read_parquet(root / "models" / "auto_accept_evidence.parquet")
    assert evidence["measured_on"].str.contains("3-fold cross-validated").all()
    assert evidence["n"].max() < 50 and evidence["n"].sum() >= 60  # every gold scene and object measured
    queue = table(root, "labeling_queue")
    assert queue["item_id"].nunique() == first["anonymized"]["accepted"]  # nothing auto-accepted, nothing lost
    released = pd.read_parquet(root / "releases" / "v0001" / "labels.parquet")
    assert released["label_source"].isin(["consensus", "review"]).all()


def test_retraining_from_the_latest_release_changes_the_model_version(demo_run):
    """Last in this module: the model it leaves is the retrained one."""
    import dagster as dg

    from annotation_pipeline.audit import read_audit_events
    from annotation_pipeline.definitions import build_definitions
    from annotation_pipeline.prelabel.model import MODEL_SAVED_EVENT, load_model

    root, _, _ = demo_run
    before = load_model(root)
    assert before.source == "gold"
    latest = max(p.stem for p in (root / "releases").glob("v*.dvc"))
    job = build_definitions("local", root).resolve_job_def("train_prelabel_model")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = {k: getattr(v, "value", v) for k, v in
            result.get_asset_materialization_events()[-1].materialization.metadata.items()}
    after = load_model(root)
    assert after.version != before.version and after.version == meta["model_version"]
    assert after.source == meta["trained_from"] == f"release {latest}"
    assert meta["evidence_measured_on"] == "60 held-out gold items"
    saved = [e["model_version"] for e in read_audit_events(root) if e["event"] == MODEL_SAVED_EVENT]
    assert saved[-2:] == [before.version, after.version]
    evidence = pd.read_parquet(root / "models" / "auto_accept_evidence.parquet")
    assert set(evidence["model_version"]) == {after.version}


def test_where_the_evidence_bar_is_met_items_skip_the_vendor_and_are_released_as_machine_labels(demo_run, monkeypatch,
                                                                                               capsys):
    """After the retraining above. The bar is lowered to this small world (5 held-out gold labels per cell,
    not 50), so auto-accept turns on: the accepted items leave the vendor batch but for the check, and the
    release carries them as machine labels, right against the sample world's truth; `trace` shows them."""
    import dagster as dg

    from annotation_pipeline.cli.lifecycle import _log_production_predictions
    from annotation_pipeline.definitions import build_definitions
    from annotation_pipeline.prelabel.auto_accept import labels_correct
    from annotation_pipeline.sample_world.sample_data import generate_partition

    root, _, _ = demo_run
    day = "2026-11-22"
    monkeypatch.setenv("ANNOTATION_PIPELINE_PSEUDONYM_SECRET", SECRET)
    defs = build_definitions("local", root)
    instance = dg.DagsterInstance.ephemeral()
    if "release" not in pd.read_json(root / "models" / "prelabel_model.json", typ="series")["source"]:
        assert defs.resolve_job_def("train_prelabel_model").execute_in_process(instance=instance).success
    generate_partition(root, day, 16, seed=3)
    _log_production_predictions(root, day)
    bar = {"config": {"min_gold": 5}}
    result = defs.resolve_job_def("annotation_lifecycle").execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False,
        run_config={"ops": {"auto_accepted_labels": bar, "auto_accept_check": bar}})
    meta = {e.asset_key.to_user_string(): {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}
    consensus = meta["consensus_labels"]  # says which crowd model labelled the scenes, and why
    assert consensus["scene_models_used"] and "| candidate" in consensus["scene_model_choice"]
    assert consensus["box_pointing_noise_px"] > 0
    auto = meta["auto_accepted_labels"]
    assert auto["auto_accept"] == "on" and auto["items_auto_accepted"] >= 1, auto
    assert auto["items"] == auto["items_auto_accepted"] + auto["items_to_vendor"]
    accepted = pd.read_parquet(root / "tables" / "auto_accepted_labels" / f"{day}.parquet")
    machine_items = set(accepted.loc[~accepted["sent_for_check"], "item_id"])
    sent = pd.read_parquet(root / "tables" / "vendor_batches" / f"{day}.parquet")
    assert not machine_items & set(sent["item_id"])  # no vendor paid for them
    assert set(accepted.loc[accepted["sent_for_check"], "item_id"]) <= set(sent["item_id"])
    version = meta["dataset_release"]["version"]
    released = pd.read_parquet(root / "releases" / version / "labels.parquet")
    machine = released[(released["label_source"] == "machine") & (released["partition_date"] == day)]
    assert set(machine["item_id"]) == machine_items and meta["dataset_release"]["machine_labels_today"] == len(machine)
    truth = pd.concat([pd.read_parquet(p) for p in (root / "sample_truth").glob("*.parquet")])
    pre = accepted[~accepted["sent_for_check"]]
    assert labels_correct(pre, truth[truth["item_id"].isin(machine_items)]).mean() >= 0.98
    assert main(["trace", min(machine_items), "--root", str(root), "--release", version]) == 0
    shown = capsys.readouterr().out
    assert "MACHINE label, auto-accepted (band " in shown and "held-out gold labels, model prelabel-" in shown
