"""Production drift: signals, the sensor, the relabel campaign and its place in the labeling queue."""

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from annotation_pipeline.contracts import (
    DRIFT_SIGNALS,
    PREDICTION_LOG,
    QUARANTINE,
    RELABEL_CAMPAIGN,
    ContractError,
    item_id_for_bytes,
)
from annotation_pipeline.monitoring.drift import (
    assess_day,
    assess_drift,
    campaign_items,
    population_stability,
    read_prediction_logs,
    run_campaign,
)
from annotation_pipeline.prelabel.model import select_for_labeling

QUIET, DRIFTED = "2026-11-19", "2026-11-20"
MODEL = "scene-v3"
REFERENCE_SHARES = {"day": 0.55, "night": 0.25, "fog": 0.05, "rain": 0.15}
FOGGY_SHARES = {"day": 0.30, "night": 0.20, "fog": 0.40, "rain": 0.10}


def _log(rng, n: int, shares: dict, confidence: tuple[float, float], day: str, prefix: str) -> pd.DataFrame:
    labels = rng.choice(list(shares), n, p=list(shares.values()))
    return pd.DataFrame({
        "logged_at": [f"{day}T{h:02d}:00:00Z" for h in rng.integers(0, 24, n)],
        "model_version": MODEL, "image_path": [f"monitoring/images/{prefix}{i:05d}.png" for i in range(n)],
        "predicted_label": labels, "confidence": rng.beta(*confidence, n)})


def _write_images(root: Path, log: pd.DataFrame, rng) -> None:
    """A small real PNG per logged prediction (distinct bytes: distinct items)."""
    for path in log["image_path"]:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        target.write_bytes(buf.getvalue())


@pytest.fixture()
def production(tmp_path):
    """A data root with a reference, a quiet day and a day where fog took over and confidence fell."""
    rng = np.random.default_rng(3)
    root = tmp_path
    (root / "monitoring" / "reference").mkdir(parents=True)
    _log(rng, 2000, REFERENCE_SHARES, (8, 2), "2026-10-01", "ref").to_parquet(
        root / "monitoring" / "reference" / f"{MODEL}.parquet", index=False)
    for day, shares, conf in [(QUIET, REFERENCE_SHARES, (8, 2)), (DRIFTED, FOGGY_SHARES, (4, 3))]:
        log = _log(rng, 600, shares, conf, day, f"{day}-")
        (root / "monitoring" / "predictions" / day).mkdir(parents=True)
        log.iloc[:300].to_parquet(root / "monitoring" / "predictions" / day / "serving-a.parquet", index=False)
        log.iloc[300:].to_csv(root / "monitoring" / "predictions" / day / "serving-b.csv", index=False)
        _write_images(root, log, rng)
    return root


def test_population_stability_is_the_textbook_sum():
    shares = population_stability(pd.Series({"a": 0.5, "b": 0.5}), pd.Series({"a": 0.9, "b": 0.1}))
    expected = (0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5)
    assert shares["psi_term"].sum() == pytest.approx(expected)
    assert population_stability(pd.Series({"a": 0.3, "b": 0.7}), pd.Series({"a": 0.3, "b": 0.7}))["psi_term"].sum() == 0
    # a class the reference never saw stays finite (floored share)
    assert np.isfinite(population_stability(pd.Series({"a": 1.0}), pd.Series({"a": 0.5, "z": 0.5}))["psi_term"]).all()


def test_a_quiet_day_is_stable_and_a_foggy_day_drifts(production):
    _, quiet = assess_day(production, QUIET)
    logs, drifted = assess_day(production, DRIFTED)
    assert not quiet.drifted and drifted.drifted
    DRIFT_SIGNALS.validate(drifted.signals)
    assert drifted.drifted_labels == {MODEL: ["fog"]}
    psi = drifted.signals.set_index("metric").loc["label_psi"]
    assert psi["value"] > 0.2 and psi["n_current"] == 600 and psi["n_reference"] == 2000
    ks = drifted.signals.set_index("metric").loc["confidence_ks"]
    reference = pd.read_parquet(production / "monitoring" / "reference" / f"{MODEL}.parquet")
    oracle = stats.ks_2samp(reference["confidence"], logs.rows["confidence"])
    assert ks["value"] == pytest.approx(oracle.statistic) and ks["p_value"] == pytest.approx(oracle.pvalue)
    assert bool(ks["drifted"])
    assert quiet.signals["value"].max() < 0.1


def test_bad_reference_rows_are_left_out_and_said(production):
    path = production / "monitoring" / "reference" / f"{MODEL}.parquet"
    reference = pd.read_parquet(path)
    reference.loc[:9, "confidence"] = 7.0
    reference.to_parquet(path, index=False)
    _, assessment = assess_day(production, DRIFTED)
    assert assessment.signals["n_reference"].eq(1990).all()
    assert assessment.notes == [f"model {MODEL}: 10 reference row(s) left out: {{'confidence_out_of_range': 10}}"]


def test_days_without_reference_or_with_too_few_predictions_are_not_judged(production):
    reference = {MODEL: pd.read_parquet(production / "monitoring" / "reference" / f"{MODEL}.parquet")}
    day = read_prediction_logs([production / "monitoring" / "predictions" / DRIFTED / "serving-a.parquet"],
                               production, DRIFTED).rows
    few = assess_drift(day.head(50), reference, DRIFTED)
    unknown = assess_drift(day.assign(model_version="scene-v9"), reference, DRIFTED)
    assert not few.drifted and "at least 200" in few.notes[0]
    assert not unknown.drifted and "no reference predictions" in unknown.notes[0]
    assert few.signals.empty and unknown.signals.empty


def test_malformed_logs_are_quarantined_row_by_row_and_counts_reconcile(tmp_path):
    folder = tmp_path / "monitoring" / "predictions" / DRIFTED
    folder.mkdir(parents=True)
    good = _log(np.random.default_rng(0), 5, REFERENCE_SHARES, (8, 2), DRIFTED, "x")
    bad = good.astype({"confidence": object})
    bad.loc[1, "confidence"] = "1.5"
    bad.loc[2, "confidence"] = "high"
    bad.loc[3, "predicted_label"] = None
    bad.to_csv(folder / "mixed.csv", index=False)
    good.drop(columns=["confidence"]).to_csv(folder / "no_confidence.csv", index=False)
    (folder / "truncated.parquet").write_bytes(b"PAR1\x00\x01garbage")
    logs = read_prediction_logs(sorted(folder.iterdir()), tmp_path, DRIFTED)
    QUARANTINE.validate(logs.quarantine)
    PREDICTION_LOG.validate(logs.rows)
    reasons = logs.quarantine.groupby("source_file")["reason"].apply(sorted).to_dict()
    base = f"monitoring/predictions/{DRIFTED}/"
    assert reasons == {base + "mixed.csv": ["confidence_out_of_range", "confidence_out_of_range", "missing_field"],
                       base + "no_confidence.csv": ["log_missing_columns"] * 5,
                       base + "truncated.parquet": ["unreadable_log"]}
    assert len(logs.rows) == 2 and logs.n_received == 5 + 5 + 1 == logs.n_accepted + len(logs.quarantine)
    assert "not a number in [0, 1]" in logs.quarantine["detail"].iloc[0]


def test_a_campaign_lands_the_most_useful_images_once_and_quarantines_missing_ones(production):
    log = pd.read_parquet(production / "monitoring" / "predictions" / DRIFTED / "serving-a.parquet")
    fog = log[log["predicted_label"] == "fog"].sort_values("confidence")
    (production / fog["image_path"].iloc[0]).unlink()  # the most useful image went missing
    campaign = run_campaign(production, f"drift-{DRIFTED}", budget=40, today="2026-11-22")
    RELABEL_CAMPAIGN.validate(campaign.items)
    assert len(campaign.items) == 39 and len(campaign.quarantine) == 1
    assert campaign.quarantine["reason"].iloc[0] == "campaign_image_missing"
    # fog, whose share grew, comes first, least confident first
    assert campaign.items["predicted_label"].eq("fog").all()
    assert campaign.items["confidence"].is_monotonic_increasing
    assert campaign.landing_dir == production / "landing" / "2026-11-22"  # the day after has passed
    landed = sorted(campaign.landing_dir.iterdir())
    assert len(landed) == 39
    assert {item_id_for_bytes(p.read_bytes()) for p in landed} == set(campaign.items["item_id"])
    manifest = json.loads(campaign.manifest_path.read_text())
    assert manifest["drifted_labels"] == {MODEL: ["fog"]} and manifest["n_landed"] == 39

    again = run_campaign(production, f"drift-{DRIFTED}", budget=40, today="2026-12-01")
    assert again.landing_dir == campaign.landing_dir  # a rerun keeps its landing day
    assert sorted(again.landing_dir.iterdir()) == landed
    pd.testing.assert_frame_equal(campaign_items(production), campaign.items)


def test_a_campaign_for_a_quiet_day_or_a_bad_id_refuses(production):
    with pytest.raises(ContractError, match="no drift"):
        run_campaign(production, f"drift-{QUIET}", budget=10, today="2026-11-22")
    with pytest.raises(ValueError, match="drift-YYYY-MM-DD"):
        run_campaign(production, "fog-please", budget=10, today="2026-11-22")


def test_campaign_items_are_labeled_first_and_count_against_the_budget():
    scenes = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "kind": "choice", "label": "day",
                           "score": [0.2, 0.3, 0.9, 0.95, 0.4, 0.99]})
    campaign = pd.DataFrame({"campaign_id": "drift-2026-11-20", "item_id": ["i5", "i3", "elsewhere"],
                             "priority": [1, 2, 3]})
    queue = select_for_labeling(scenes, "2026-11-21", budget=4, campaign_items=campaign)
    assert queue["item_id"].tolist() == ["i5", "i3", "i0", "i1"]
    assert queue["reason"].tolist()[:2] == ["relabel campaign drift-2026-11-20"] * 2
    assert select_for_labeling(scenes, "2026-11-21", budget=4)["item_id"].tolist() == ["i0", "i1", "i4", "i2"]


def test_the_sensor_starts_one_campaign_per_drifted_day_in_a_real_dagster_instance(production):
    from annotation_pipeline.definitions import build_definitions
    from annotation_pipeline.defs.monitoring import drift_campaign_sensor

    defs = build_definitions("local", production)
    instance = dg.DagsterInstance.ephemeral()
    signals = defs.resolve_job_def("annotation_lifecycle").get_subset(asset_selection={dg.AssetKey("drift_signals")})
    assert signals.execute_in_process(partition_key=QUIET, instance=instance).success
    quiet_day = drift_campaign_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert quiet_day.run_requests == [] and f"{QUIET}: no drift" in quiet_day.skip_reason.skip_message
    assert "label_psi" in quiet_day.skip_reason.skip_message  # the numbers, not just the verdict
    result = signals.execute_in_process(partition_key=DRIFTED, instance=instance)
    assert result.success
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"predictions_match_reference": False}
    meta = result.asset_materializations_for_node("drift_signals")[0].metadata
    assert meta["received"].value == meta["accepted"].value == 600 and meta["quarantined"].value == 0
    assert pd.read_parquet(production / "monitoring" / "quarantine" / f"{DRIFTED}.parquet").empty

    tick = drift_campaign_sensor(dg.build_sensor_context(instance=instance, cursor=quiet_day.cursor, definitions=defs))
    assert [r.partition_key for r in tick.run_requests] == [f"drift-{DRIFTED}"]
    assert tick.run_requests[0].run_key == f"drift-{DRIFTED}"
    assert tick.dynamic_partitions_requests[0].partition_keys == [f"drift-{DRIFTED}"]
    quiet_tick = drift_campaign_sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor, definitions=defs))
    assert "no new drift_signals" in quiet_tick.skip_message

    instance.add_dynamic_partitions("relabel_campaigns", [f"drift-{DRIFTED}"])
    run = defs.resolve_job_def("run_relabel_campaign").execute_in_process(
        partition_key=f"drift-{DRIFTED}", instance=instance,
        run_config={"ops": {"relabel_campaign": {"config": {"budget": 25}}}})
    assert run.success
    items = pd.read_parquet(production / "tables" / "relabel_campaign" / f"drift-{DRIFTED}.parquet")
    assert len(items) == 25 and set(items["predicted_label"]) == {"fog"}
    # the day after the drifted one, or today once that day has passed
    landing = production / "landing" / max("2026-11-21", datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    assert sorted(p.name for p in landing.iterdir()) == sorted(items["landing_file"].str.rsplit("/", n=1).str[1])


def test_the_drift_command_answers_scripts_and_gates_ci(production, capsys):
    from annotation_pipeline.cli.main import main

    assert main(["drift", "--date", QUIET, "--root", str(production), "--json"]) == 0
    quiet = json.loads(capsys.readouterr().out)
    assert quiet["drifted"] is False and quiet["campaign"] is None and quiet["predictions"]["accepted"] == 600
    assert main(["drift", "--date", DRIFTED, "--root", str(production), "--fail-on-drift"]) == 3
    out = capsys.readouterr().out
    assert "DRIFTED" in out and "share grew for fog" in out and f"drift-{DRIFTED}" in out
    assert main(["drift", "--date", "2026-11-18", "--root", str(production)]) == 1
    assert "no prediction log for 2026-11-18" in capsys.readouterr().err


def test_a_campaign_copies_nothing_from_outside_the_data_root(production, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    outside.write_bytes(b"\x89PNG not ours")
    path = production / "monitoring" / "predictions" / DRIFTED / "serving-a.parquet"
    log = pd.read_parquet(path)
    fog = log["predicted_label"].eq("fog")
    log.loc[fog, "confidence"] = 0.01  # the campaign's first picks
    log.loc[log.index[fog][:2], "image_path"] = [f"../{outside.parent.name}/secret.png", str(outside)]
    log.to_parquet(path, index=False)
    campaign = run_campaign(production, f"drift-{DRIFTED}", budget=5, today="2026-11-22")
    assert sorted(campaign.quarantine["source_file"]) == sorted([f"../{outside.parent.name}/secret.png", str(outside)])
    assert not any(p.read_bytes() == outside.read_bytes() for p in campaign.landing_dir.iterdir())
    assert len(campaign.items) == 3


def test_a_failed_campaign_says_why_and_lands_in_the_audit_log(production):
    from annotation_pipeline.definitions import build_definitions
    from annotation_pipeline.defs.automation import record_failed_runs
    from annotation_pipeline.defs.resources import DataRoot

    defs = build_definitions("local", production)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("relabel_campaigns", [f"drift-{QUIET}"])
    run = defs.resolve_job_def("run_relabel_campaign").execute_in_process(
        partition_key=f"drift-{QUIET}", instance=instance, raise_on_error=False)
    assert not run.success
    failure = run.get_run_failure_event()
    # DataRoot holds a nested table-store resource, so the context must be opened as a context manager
    with dg.build_run_status_sensor_context(
            sensor_name="record_failed_runs", dagster_instance=instance, dagster_run=run.dagster_run,
            dagster_event=failure, resources={"data_root": DataRoot(path=str(production))}) as status:
        record_failed_runs(status.for_run_failure())
    events = [json.loads(line) for line in (production / "audit" / "audit.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run_failed" and events[-1]["partition"] == f"drift-{QUIET}"
    step_failure = next(e for e in run.all_events if e.is_step_failure)
    assert "show no drift any more" in step_failure.event_specific_data.error.message
