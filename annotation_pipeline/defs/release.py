"""Release wiring: the day's consensus becomes a DVC-versioned dataset release."""


import dagster as dg
import pandas as pd

from annotation_pipeline.defs.common import OWNERS, daily_partitions
from annotation_pipeline.defs.resources import DataRoot, ReleaseStore
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.release.report import build_provenance, build_quality_report
from annotation_pipeline.release.store import merge_into_dataset


@dg.asset(
    group_name="release", partitions_def=daily_partitions, owners=OWNERS, kinds={"dvc", "parquet"},
    description="The dataset release: the previous release with this day's consensus labels replaced, "
                "written whole to `releases/<version>/` (labels, provenance, quality report, manifest "
                "with sha256s), `dvc add`-ed and pushed to the DVC remote, then registered in "
                "`releases/index.jsonl`. Identical content makes no new release.",
)
def dataset_release(context: dg.AssetExecutionContext, data_root: DataRoot, releases: ReleaseStore,
                    consensus_labels: pd.DataFrame, review_queue: pd.DataFrame,
                    agreement_metrics: pd.DataFrame, annotator_scorecards: pd.DataFrame,
                    returned_annotations: pd.DataFrame, raw_items: pd.DataFrame) -> dg.MaterializeResult:
    date = context.partition_key
    store = releases.store()
    latest = store.latest()
    previous_labels = store.read_table(latest.version, "labels") if latest else None
    previous_provenance = store.read_table(latest.version, "provenance") if latest else None
    labels = merge_into_dataset(previous_labels, consensus_labels, date)
    provenance = merge_into_dataset(previous_provenance,
                                    build_provenance(consensus_labels, returned_annotations, raw_items), date)
    quarantine = data_root.read_quarantine(date)
    report = build_quality_report(labels, date, consensus_labels, review_queue, agreement_metrics,
                                  annotator_scorecards, quarantine)
    if labels.empty:  # a day with nothing labeled and no earlier release: nothing to version
        context.log.warning(f"no labels for {date} and no earlier release: no release made")
        return dg.MaterializeResult(metadata={"version": "", "new_release": False, "labels": 0,
                                              "reason": "the dataset would be empty"})
    ontology, guidelines = load_ontology(), load_guidelines()
    info = store.publish(labels, provenance, report, sorted(labels["partition_date"].unique()),
                         {"ontology": ontology.version, "guidelines": guidelines.version,
                          "model": ",".join(sorted(returned_annotations["model_version"].unique()))})
    context.log.info(f"release {info.version} ({'new' if info.created else 'unchanged, reused'})")
    return dg.MaterializeResult(metadata={
        "version": info.version, "new_release": info.created, "fingerprint": info.fingerprint,
        "parent": info.parent or "", "labels": info.n_labels, "items": info.n_items,
        "partitions": dg.MetadataValue.json(info.partitions), "dvc_md5": info.dvc_md5,
        "dvc_remote": info.remote,
        "path": dg.MetadataValue.path(str(store.releases_dir / info.version)),
        "quality_report": dg.MetadataValue.md((store.releases_dir / info.version / "quality_report.md").read_text()),
    })


defs = dg.Definitions(assets=[dataset_release])
