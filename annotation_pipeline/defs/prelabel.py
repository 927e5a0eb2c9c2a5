"""Pre-labeling and active-learning wiring."""


import dagster as dg
import numpy as np
import pandas as pd

from annotation_pipeline.contracts import LABELING_QUEUE, PRELABELS
from annotation_pipeline.defs.common import OWNERS, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.monitoring.drift import campaign_items
from annotation_pipeline.prelabel.active_learning import (
    build_labeling_queue,
    image_embedding,
    mean_nearest_distance,
    prelabel_uncertainty,
)
from annotation_pipeline.prelabel.model import (
    ModelIntegrityError,
    load_model,
    load_rgb,
    save_model,
    train_prelabel_model,
)

gold_set = dg.AssetSpec(
    "gold_set", group_name="prelabel", owners=OWNERS, kinds={"parquet"},
    description="Items with known answers (`gold/images/*.png` + `gold/gold_labels.parquet` under the "
                "data root), kept by the program team. They train the pre-label model and are hidden "
                "among vendor tasks to score annotators. Gold images must carry no personal data.",
)


@dg.asset(
    group_name="prelabel", owners=OWNERS, kinds={"scikitlearn"}, deps=[gold_set],
    description="The pre-label model: scene classifier (logistic regression on colour statistics) and "
                "object detector (background-difference proposals + random forest on region features), "
                "trained on the gold set. Its version is the hash of its training data. Retrained only "
                "when this asset is materialized, so reruns of a day's partition reuse the same model. "
                "Stored as skops (an allow-list of types, never pickle) with a JSON card; its sha256 goes "
                "to the audit log, and a model file that does not match it is never loaded.",
)
def prelabel_model(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.MaterializeResult:
    gold_dir, labels_path = data_root.layout.gold, data_root.layout.gold_labels
    if not labels_path.exists():
        raise dg.Failure(f"no gold set at {gold_dir}: put gold images and gold_labels.parquet there "
                         "(`annotation-pipeline demo` generates a sample one)")
    labels = pd.read_parquet(labels_path)
    images = {p.stem: load_rgb(p) for p in sorted(data_root.layout.gold_images.glob("*.png"))}
    model = train_prelabel_model(images, labels)
    sha256 = save_model(model, data_root.root)
    context.log.info(f"trained {model.version} on {model.trained_on} gold items")
    return dg.MaterializeResult(metadata={
        "model_version": model.version, "model_sha256": sha256,
        "path": dg.MetadataValue.path(str(data_root.layout.prelabel_model)), **model.metrics})


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"scikitlearn", "parquet"},
    deps=[prelabel_model],
    description="Model-assisted labels for the day's anonymized items: one scene suggestion per item "
                "and object boxes, each with a score and the model version.\n\n" + PRELABELS.markdown(),
)
def prelabels(data_root: DataRoot, anonymized_items: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    try:
        model = load_model(data_root.root)
    except ModelIntegrityError as exc:
        raise dg.Failure(str(exc)) from None
    images = {row.item_id: load_rgb(data_root.root / row.image_path)
              for row in anonymized_items[["item_id", "image_path"]].itertuples(index=False)}
    out = model.predict(images)
    scene = out[out["kind"] == "choice"]
    return dg.Output(out, metadata={
        "model_version": model.version, "items": len(images), "objects_proposed": int((out["kind"] != "choice").sum()),
        "mean_scene_score": float(scene["score"].mean()) if len(scene) else 0.0,
        **table_metadata(out),
    })


class LabelingBudget(dg.Config):
    budget: int = 500  # items per day the program pays a vendor for
    seed: int = 0  # breaks ties between equally useful items, reproducibly


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"scikitlearn", "pandas"},
    description="Active learning under the day's labeling budget: items the model doubts (margin of its "
                "pre-label scores) that are also unlike the items already queued (greedy uncertainty-weighted "
                "k-center on an image embedding: HOG of a thumbnail + colour histogram), so the vendor does not "
                "label twenty copies of one confusing scene. Images a drift campaign landed come first, in the "
                "campaign's order. Each row says why it was picked (campaign, uncertainty rank, diversity rank); "
                "`benchmarks/bench_active_learning.py` measures the labels this saves over random sampling.\n\n"
                + LABELING_QUEUE.markdown(),
)
def labeling_queue(context: dg.AssetExecutionContext, config: LabelingBudget, data_root: DataRoot,
                   prelabels: pd.DataFrame, anonymized_items: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    if config.budget < 0:
        raise dg.Failure(f"labeling budget {config.budget} is negative: give the items per day to send (0 = none)")
    uncertainty = prelabel_uncertainty(prelabels)
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
    return dg.Output(queue, metadata={
        "candidates": len(ids), "selected": len(queue), "budget": config.budget,
        "not_selected": len(ids) - len(queue), "items_without_image": int(len(uncertainty) - len(ids)),
        "from_campaigns": int(queue["campaign_id"].notna().sum()), "from_active_learning": len(picked),
        "mean_uncertainty_selected": float(queue["uncertainty"].mean()) if len(queue) else 0.0,
        "mean_uncertainty_candidates": float(uncertainty.mean()) if len(uncertainty) else 0.0,
        **{k: round(v, 4) for k, v in spread.items()},
        "why_selected": dg.MetadataValue.md(
            "Spread = mean distance from each picked item to its nearest other pick in the image embedding "
            "(0 = copies); `spread_if_uncertainty_only` is what the top items by uncertainty alone would have "
            "had.\n\n" + (queue[["priority", "item_id", "uncertainty", "reason"]].head(10).to_markdown(index=False)
                          if len(queue) else "(nothing selected)")),
        **table_metadata(queue),
    })


defs = dg.Definitions(assets=[gold_set, prelabel_model, prelabels, labeling_queue])
