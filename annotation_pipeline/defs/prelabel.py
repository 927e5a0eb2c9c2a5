"""Pre-labeling and active-learning wiring."""


import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import LABELING_QUEUE, PRELABELS
from annotation_pipeline.defs.common import OWNERS, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.monitoring.drift import campaign_items
from annotation_pipeline.prelabel.model import (
    ModelIntegrityError,
    load_model,
    load_rgb,
    save_model,
    select_for_labeling,
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


@dg.asset(
    group_name="prelabel", partitions_def=daily_partitions, owners=OWNERS, kinds={"pandas"},
    description="Active learning: the items the model is least sure of, most informative first, up to "
                "the day's labeling budget. Images a drift campaign landed come first.\n\n" + LABELING_QUEUE.markdown(),
)
def labeling_queue(context: dg.AssetExecutionContext, config: LabelingBudget, data_root: DataRoot,
                   prelabels: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    queue = select_for_labeling(prelabels, context.partition_key, config.budget,
                                campaign_items=campaign_items(data_root.root))
    n_items = prelabels["item_id"].nunique()
    return dg.Output(queue, metadata={
        "candidates": n_items, "selected": len(queue), "budget": config.budget,
        "not_selected": n_items - len(queue),
        "from_campaigns": int(queue["reason"].str.startswith("relabel campaign").sum()),
        "mean_uncertainty_selected": float(queue["uncertainty"].mean()) if len(queue) else 0.0,
        **table_metadata(queue),
    })


defs = dg.Definitions(assets=[gold_set, prelabel_model, prelabels, labeling_queue])
