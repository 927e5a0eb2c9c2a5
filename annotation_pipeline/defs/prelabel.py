"""Pre-labeling, auto-accept and active-learning wiring."""


import dagster as dg
import numpy as np
import pandas as pd

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import (
    AUTO_ACCEPT_EVIDENCE,
    AUTO_ACCEPTED_LABELS,
    GOLD_LABELS,
    LABELING_QUEUE,
    PRELABELS,
)
from annotation_pipeline.defs.common import OWNERS, contract_metadata, daily_partitions, table_metadata, ui_metadata
from annotation_pipeline.defs.prelabel_service import PrelabelModelService, PrelabelServiceError
from annotation_pipeline.defs.resources import DataRoot, ReleaseStore
from annotation_pipeline.monitoring.drift import campaign_items
from annotation_pipeline.ontology import load_ontology
from annotation_pipeline.prelabel.active_learning import (
    build_labeling_queue,
    image_embedding,
    mean_nearest_distance,
    prelabel_uncertainty,
)
from annotation_pipeline.prelabel.auto_accept import (
    AutoAcceptPolicy,
    accept,
    check_precision,
    earning_cells,
    items_for_vendor,
    measure_precision,
    switch_off,
    switched_off,
)
from annotation_pipeline.prelabel.model import load_rgb, out_of_fold_predictions, release_training_set

gold_set = dg.AssetSpec(
    "gold_set", group_name="prelabel", owners=OWNERS, kinds={"parquet"},
    metadata=contract_metadata(GOLD_LABELS),
    description="Items with known answers (`gold/images/*.png` + `gold/gold_labels.parquet` under the "
                "data root), kept by the program team. They train the pre-label model and are hidden "
                "among vendor tasks to score annotators. Gold images must carry no personal data.",
)


def _gold(data_root: DataRoot) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    gold_dir, labels_path = data_root.layout.gold, data_root.layout.gold_labels
    if not labels_path.exists():
        raise dg.Failure(f"no gold set at {gold_dir}: put gold images and gold_labels.parquet there "
                         "(`annotation-pipeline demo` generates a sample one)")
    images = {p.stem: load_rgb(p) for p in sorted(data_root.layout.gold_images.glob("*.png"))}
    return images, pd.read_parquet(labels_path)


def _release_training_set(data_root: DataRoot, releases: ReleaseStore, exclude: set[str]
                          ) -> tuple[dict[str, np.ndarray], pd.DataFrame, str] | None:
    """The latest release's images and labels (gold left out), verified first; None without a release."""
    store = releases.store()
    latest = store.latest()
    if latest is None:
        return None
    problems = store.verify(latest.version)
    if problems:
        raise dg.Failure(f"release {latest.version} does not verify, so the model does not learn from it: "
                         f"{problems[0]} (`annotation-pipeline verify` for all)")
    index = store.read_table(latest.version, "images")
    paths = {row.item_id: data_root.layout.anonymized_image(row.partition_date, row.file_name)
             for row in index[["item_id", "partition_date", "file_name"]].itertuples(index=False)}
    images, labels = release_training_set(store.read_table(latest.version, "labels"), paths, exclude)
    return images, labels, f"release {latest.version}"


def _evidence_markdown(evidence: pd.DataFrame, policy: AutoAcceptPolicy) -> str:
    if evidence.empty:
        return "(no evidence)"
    table = evidence.assign(earns=(evidence["n"] >= policy.min_gold) & (evidence["precision"] >= policy.target_precision))
    return table.drop(columns=["model_version"]).to_markdown(index=False, floatfmt=".3f")


@dg.asset(
    group_name="prelabel", owners=OWNERS, kinds={"scikitlearn"}, deps=[gold_set],
    description="The pre-label model, behind the `prelabeler` resource: the built-in scikit-learn model "
                "(scene classifier and region-proposal detector on HOG and colour-histogram features, scores "
                "calibrated by isotonic regression on folds it did not see) or a team's own model behind "
                "a Label Studio ML backend (`ANNOTATION_PIPELINE_PRELABEL_BACKEND_URL`). The built-in model "
                "retrains from the latest release's labels (vendor labels; gold items left out), or from the "
                "gold set before the first release. Its version is the hash of its training data. Stored as "
                "skops (an allow-list of types, never pickle) with a JSON card; its sha256 goes to the audit "
                "log, and a model file that does not match it is never loaded. Then the model is measured on "
                "held-out gold per class and score band (`models/auto_accept_evidence.parquet`): the evidence "
                "auto-accept runs on. Retrained only when this asset is materialized.",
)
def prelabel_model(context: dg.AssetExecutionContext, data_root: DataRoot, releases: ReleaseStore,
                   prelabeler: PrelabelModelService) -> dg.MaterializeResult:
    gold_images, gold_labels = _gold(data_root)
    from_release = _release_training_set(data_root, releases, exclude=set(gold_images))
    images, labels, source = from_release or (gold_images, gold_labels, "gold")
    if from_release and labels[labels["kind"] == "choice"]["label"].nunique() < 2:
        context.log.warning(f"{source} holds fewer than two scene classes outside gold: training on gold")
        images, labels, source = gold_images, gold_labels, "gold"
    facts = prelabeler.retrain(images, labels, source)
    classes = set(load_ontology().scene_classes) | set(load_ontology().object_classes)
    refused = 0
    try:
        if facts is not None and source == "gold":  # no held-out gold: each gold item predicted by a model without it
            version = facts["model_version"]
            predicted = out_of_fold_predictions(gold_images, gold_labels, version)
            measured_on = f"{len(gold_images)} gold items, 3-fold cross-validated (each predicted by a model without it)"
        else:
            batch = prelabeler.predict(gold_images, classes)
            predicted, version, refused = batch.prelabels, batch.model_version, len(batch.quarantined)
            measured_on = f"{len(gold_images)} held-out gold items"
    except PrelabelServiceError as exc:
        raise dg.Failure(f"measuring the pre-label model on gold: {exc}") from None
    evidence = measure_precision(predicted, gold_labels, measured_on)
    write_parquet_atomic(evidence, data_root.layout.auto_accept_evidence)
    # held-out predictions on gold are also what hidden gold tasks show the vendor (vendor_batches)
    write_parquet_atomic(PRELABELS.conform(predicted), data_root.layout.gold_prelabels)
    policy = AutoAcceptPolicy()
    earning = earning_cells(evidence, policy)
    context.log.info(f"{prelabeler.describe()}: {version} from {source}; {len(earning)} class/band cells earn auto-accept")
    return dg.MaterializeResult(metadata=ui_metadata({
        "model": prelabeler.describe(), "model_version": version,
        "trained_from": source if facts else "trained by its own team (not by this pipeline)",
        "gold_result_items_refused": refused,
        **{k: v for k, v in (facts or {}).items() if k not in ("model_version", "source")},
        "evidence_measured_on": measured_on, "evidence_cells": len(evidence),
        "cells_earning_auto_accept": len(earning), "target_precision": policy.target_precision,
        "min_gold_per_cell": policy.min_gold,
        "evidence": dg.MetadataValue.md(_evidence_markdown(evidence, policy)),
        "path": dg.MetadataValue.path(str(data_root.layout.prelabel_model)),
    }, data_root.root))


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"scikitlearn", "parquet"},
    metadata=contract_metadata(PRELABELS),
    deps=[prelabel_model],
    description="Model-assisted labels for the day's anonymized items from the `prelabeler` resource: one scene "
                "suggestion per item and object boxes, each with a calibrated score and the model version. "
                "An external model's unusable result items are quarantined with a reason.\n\n" + PRELABELS.markdown(),
)
def prelabels(context: dg.AssetExecutionContext, data_root: DataRoot, prelabeler: PrelabelModelService,
              anonymized_items: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    images = {row.item_id: load_rgb(data_root.root / row.image_path)
              for row in anonymized_items[["item_id", "image_path"]].itertuples(index=False)}
    ontology = load_ontology()
    try:
        batch = prelabeler.predict(images, set(ontology.scene_classes) | set(ontology.object_classes),
                                   context.partition_key)
    except PrelabelServiceError as exc:
        raise dg.Failure(str(exc)) from None
    data_root.write_quarantine("prelabel", context.partition_key, batch.quarantined)
    out = batch.prelabels
    scene = out[out["kind"] == "choice"]
    with_prelabels = out["item_id"].nunique()
    return dg.Output(out, metadata=ui_metadata({
        "model": prelabeler.describe(), "model_version": batch.model_version, "items": len(images),
        "items_with_prelabels": with_prelabels, "items_without_prelabels": len(images) - with_prelabels,
        "result_items_quarantined": len(batch.quarantined),
        "objects_proposed": int((out["kind"] != "choice").sum()),
        "mean_scene_score": float(scene["score"].mean()) if len(scene) else 0.0,
        **table_metadata(out, PRELABELS),
    }, data_root.root))


class AutoAcceptConfig(dg.Config):
    # Precision a class and score band must show on held-out gold before its pre-labels skip the vendor.
    target_precision: float = 0.98
    min_gold: int = 50          # gold labels a cell needs: one error in 50 is already 0.98
    check_share: float = 0.10   # accepted items still sent to the vendor, as a check on the model
    seed: int = 0

    def policy(self) -> AutoAcceptPolicy:
        return AutoAcceptPolicy(self.target_precision, self.min_gold, self.check_share, self.seed)


def _read_evidence(data_root: DataRoot, model_version: str) -> pd.DataFrame:
    path = data_root.layout.auto_accept_evidence
    evidence = pd.read_parquet(path) if path.is_file() else AUTO_ACCEPT_EVIDENCE.empty()
    return evidence[evidence["model_version"] == model_version]


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"pandas"},
    metadata=contract_metadata(AUTO_ACCEPTED_LABELS),
    description="Auto-accept: items whose every pre-label sits in a class and score band where the model's "
                "precision on held-out gold meets the target (default 0.98, on at least 50 gold labels) are "
                "released with machine labels (label source `machine`, with band, measured precision and n) "
                "instead of going to the vendor. A seeded share still goes to the vendor as a check. Off for "
                "a model version once a check fell below the target (audit event `auto_accept_switched_off`); "
                "the metadata says why.\n\n" + AUTO_ACCEPTED_LABELS.markdown(),
)
def auto_accepted_labels(context: dg.AssetExecutionContext, config: AutoAcceptConfig, data_root: DataRoot,
                         prelabels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    policy = config.policy()
    versions = sorted(prelabels["model_version"].unique())
    version = versions[0] if len(versions) == 1 else ""
    evidence = _read_evidence(data_root, version)
    earning = earning_cells(evidence, policy)
    off = switched_off(data_root.root, version) if version else None
    accepted = AUTO_ACCEPTED_LABELS.empty()
    if not versions:
        reason = "off: no pre-labels today"
    elif not version:
        reason = f"off: the day's pre-labels come from {len(versions)} model versions, evidence is per version"
    elif off:
        reason = (f"off: switched off for {version} after the vendor check measured precision {off['precision']} "
                  f"on {off['n']} labels (target {policy.target_precision}); retrain the model to turn it back on")
    elif evidence.empty:
        reason = f"off: no held-out gold evidence for {version} (materialize prelabel_model)"
    elif earning.empty:
        best = evidence.sort_values(["precision", "n"], ascending=False).iloc[0]
        reason = (f"off: no class and score band reaches precision {policy.target_precision} on at least "
                  f"{policy.min_gold} held-out gold labels (best: {best['kind']} {best['label']} {best['band']}, "
                  f"{best['precision']:.3f} on {best['n']})")
    else:
        accepted = accept(prelabels, evidence, policy)
        reason = f"on: {len(earning)} class/band cells earn it"
    items = accepted.drop_duplicates("item_id")
    n_items, n_check = prelabels["item_id"].nunique(), int(items["sent_for_check"].sum())
    context.log.info(f"auto-accept {reason}")
    return dg.Output(accepted, metadata=ui_metadata({
        "auto_accept": reason.split(":")[0], "reason": reason, "target_precision": policy.target_precision,
        "model_version": version, "items": n_items, "items_auto_accepted": len(items) - n_check,
        "items_sent_as_check": n_check, "items_to_vendor": n_items - (len(items) - n_check),
        "labels_auto_accepted": int((~accepted["sent_for_check"]).sum()),
        "min_measured_precision": float(accepted["measured_precision"].min()) if len(accepted) else None,
        "gold_labels_behind": int(earning["n"].sum()) if len(accepted) else 0,
        **table_metadata(accepted, AUTO_ACCEPTED_LABELS),
    }, data_root.root))


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"pandas"},
    description="The check on auto-accept: the machine labels of the items drawn for the check, compared "
                "with the vendor's consensus on them (same choice; same class at IoU >= 0.5). Below the target "
                "precision, auto-accept is switched off for that model version (audit event), and this "
                "asset's metadata says so.",
)
def auto_accept_check(context: dg.AssetExecutionContext, config: AutoAcceptConfig, data_root: DataRoot,
                      auto_accepted_labels: pd.DataFrame, consensus_labels: pd.DataFrame) -> dg.MaterializeResult:
    precision, n = check_precision(auto_accepted_labels, consensus_labels)
    versions = sorted(auto_accepted_labels["model_version"].unique())
    state = "no checked item came back" if precision is None else "held"
    if precision is not None and precision < config.target_precision:
        for version in versions:
            if not switched_off(data_root.root, version):
                switch_off(data_root.root, version, "vendor check below target", precision, n)
        state = "switched off"
        context.log.warning(f"auto-accept switched off: check precision {precision:.3f} on {n} labels "
                            f"< target {config.target_precision}")
    return dg.MaterializeResult(metadata={
        "auto_accept": state, "check_precision": precision, "checked_labels": n,
        "target_precision": config.target_precision, "model_versions": dg.MetadataValue.json(versions)})


class LabelingBudget(dg.Config):
    budget: int = 500  # items per day the program pays a vendor for
    seed: int = 0  # breaks ties between equally useful items, reproducibly


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"scikitlearn", "pandas"},
    metadata=contract_metadata(LABELING_QUEUE),
    description="Active learning under the day's labeling budget: items the model doubts (margin of its "
                "pre-label scores) that are also unlike the items already queued (greedy uncertainty-weighted "
                "k-center on an image embedding: HOG of a thumbnail + colour histogram), so the vendor does not "
                "label twenty copies of one confusing scene. Images a drift campaign landed come first, in the "
                "campaign's order. Each row says why it was picked (campaign, uncertainty rank, diversity rank); "
                "`benchmarks/bench_active_learning.py` measures the labels this saves over random sampling.\n\n"
                + LABELING_QUEUE.markdown(),
)
def labeling_queue(context: dg.AssetExecutionContext, config: LabelingBudget, data_root: DataRoot,
                   prelabels: pd.DataFrame, anonymized_items: pd.DataFrame,
                   auto_accepted_labels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    if config.budget < 0:
        raise dg.Failure(f"labeling budget {config.budget} is negative: give the items per day to send (0 = none)")
    # auto-accepted items (but the check share) are released with machine labels: not candidates
    candidates = items_for_vendor(prelabels, auto_accepted_labels)
    n_auto = prelabels["item_id"].nunique() - candidates["item_id"].nunique()
    uncertainty = prelabel_uncertainty(candidates)
    paths = anonymized_items.drop_duplicates("item_id").set_index("item_id")["image_path"]
    ids = uncertainty.index[uncertainty.index.isin(paths.index)]
    features = np.stack([image_embedding(load_rgb(data_root.root / paths[i])) for i in ids]) if len(ids) \
        else np.zeros((0, 1))
    queue = build_labeling_queue(ids, uncertainty[ids].to_numpy(), features, context.partition_key, config.budget,
                                 campaign_items=campaign_items(data_root.root), seed=config.seed)
    picked = queue[queue["campaign_id"].isna()]
    others = uncertainty[ids[~ids.isin(queue.loc[queue["campaign_id"].notna(), "item_id"])]]
    by_doubt = others.sort_values(ascending=False, kind="stable").index[:len(picked)]
    spread = {"spread_selected": mean_nearest_distance(features[ids.get_indexer(picked["item_id"])]),
              "spread_if_uncertainty_only": mean_nearest_distance(features[ids.get_indexer(by_doubt)])}
    return dg.Output(queue, metadata=ui_metadata({
        "candidates": len(ids), "selected": len(queue), "budget": config.budget,
        "not_selected": len(ids) - len(queue), "items_without_image": int(len(uncertainty) - len(ids)),
        "auto_accepted_not_candidates": n_auto,
        "from_campaigns": int(queue["campaign_id"].notna().sum()), "from_active_learning": len(picked),
        "mean_uncertainty_selected": float(queue["uncertainty"].mean()) if len(queue) else 0.0,
        "mean_uncertainty_candidates": float(uncertainty.mean()) if len(uncertainty) else 0.0,
        **{k: round(v, 4) for k, v in spread.items()},
        "why_selected": dg.MetadataValue.md(
            "Spread = mean distance from each picked item to its nearest other pick in the image embedding "
            "(0 = copies); `spread_if_uncertainty_only` is what the top items by uncertainty alone would have "
            "had.\n\n" + (queue[["priority", "item_id", "uncertainty", "reason"]].head(10).to_markdown(index=False)
                          if len(queue) else "(nothing selected)")),
        **table_metadata(queue, LABELING_QUEUE),
    }, data_root.root))


defs = dg.Definitions(assets=[gold_set, prelabel_model, prelabels, auto_accepted_labels, auto_accept_check,
                              labeling_queue])
