"""Release wiring: the day's consensus becomes a DVC-versioned dataset release."""


import dagster as dg
import pandas as pd

from annotation_pipeline.defs.common import OWNERS, daily_partitions, ui_metadata
from annotation_pipeline.defs.gold import read_gold
from annotation_pipeline.defs.resources import DataRoot, ReleaseStore
from annotation_pipeline.ontology import load_guidelines, load_ontology
from annotation_pipeline.prelabel.auto_accept import released_labels
from annotation_pipeline.release.evidence import calibration_report, changes_since, release_attachments, release_images
from annotation_pipeline.release.report import build_provenance, build_quality_report
from annotation_pipeline.release.reviewed import apply_review_decisions, review_figures
from annotation_pipeline.release.store import ReleaseIntegrityError


@dg.asset(
    group_name="release", partitions_def=daily_partitions, owners=OWNERS, kinds={"dvc", "parquet"},
    # One release at a time across runs (limit 1 in dagster.yaml): backfills queue here instead
    # of racing for the next version. The store's publish lock serializes within a host too.
    pool="dataset_release",
    description="The dataset release: the latest release with this day's labels replaced (vendor consensus, "
                "plus auto-accepted machine labels marked `label_source` = machine with their evidence), "
                "written whole to `releases/<version>/` (labels, provenance, image index, quality report "
                "as JSON, Markdown and one self-contained HTML file, COCO and Label Studio exports, manifest "
                "with sha256s), `dvc add`-ed and pushed to the DVC remote, registered in "
                "`releases/index.jsonl` and the hash-chained audit log, and committed and tagged "
                "`dataset-vNNNN` in the data root's git registry (`dvc get ROOT releases/vNNNN --rev "
                "dataset-vNNNN` restores it). Identical content makes no new release. The parent release "
                "is verified first: a tampered parent stops the step. Review decisions are applied over "
                "consensus: the latest decision per review task confirms or overrides a candidate "
                "(`label_source` review, with its `review_decision_id`) or keeps it out.",
)
def dataset_release(context: dg.AssetExecutionContext, data_root: DataRoot, releases: ReleaseStore,
                    consensus_labels: pd.DataFrame, review_queue: pd.DataFrame,
                    agreement_metrics: pd.DataFrame, annotator_scorecards: pd.DataFrame,
                    returned_annotations: pd.DataFrame, raw_items: pd.DataFrame,
                    anonymized_items: pd.DataFrame, auto_accepted_labels: pd.DataFrame,
                    review_decisions: pd.DataFrame) -> dg.MaterializeResult:
    date = context.partition_key
    # vendor consensus with the reviewers' decisions applied (label_source consensus / review) ...
    reviewed = apply_review_decisions(consensus_labels, review_decisions, returned_annotations)
    store = releases.store()
    quarantine = data_root.read_quarantine(date)

    ontology, guidelines = load_ontology(), load_guidelines()
    gold = read_gold(data_root)

    def report_for(dataset: pd.DataFrame, parent_labels: pd.DataFrame | None) -> dict:
        report = build_quality_report(dataset, date, reviewed, review_queue, agreement_metrics,
                                      annotator_scorecards, quarantine)
        report["partition"].update(review_figures(review_decisions, reviewed))
        return {**report, **changes_since(parent_labels, dataset), **calibration_report(returned_annotations, gold)}

    def attachments(report: dict, dataset: pd.DataFrame, images: pd.DataFrame) -> dict[str, bytes]:
        return release_attachments(report, dataset, images, ontology, agreement=agreement_metrics, scorecards=annotator_scorecards,
                                   answers=returned_annotations, gold=gold, quarantine=quarantine)

    # ... plus the machine labels of auto-accepted items (label_source machine, with their evidence)
    day_labels = released_labels(reviewed, auto_accepted_labels)
    models = set(returned_annotations["model_version"]) | set(auto_accepted_labels["model_version"])
    try:
        info = store.release_partition(
            date, day_labels, build_provenance(reviewed, returned_annotations, raw_items), report_for,
            {"ontology": ontology.version, "guidelines": guidelines.version, "model": ",".join(sorted(models))},
            day_images=release_images(anonymized_items), attachments=attachments)
    except ReleaseIntegrityError as exc:
        raise dg.Failure(description=str(exc).splitlines()[0], metadata=ui_metadata({
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in exc.problems))}, data_root.root)) from None
    if info is None:  # a day with nothing labeled and no earlier release: nothing to version
        context.log.warning(f"no labels for {date} and no earlier release: no release made")
        return dg.MaterializeResult(metadata={"version": "", "new_release": False, "labels": 0,
                                              "reason": "the dataset would be empty"})
    context.log.info(f"release {info.version} ({'new' if info.created else 'unchanged, reused'})")
    return dg.MaterializeResult(metadata=ui_metadata({
        "version": info.version, "new_release": info.created, "fingerprint": info.fingerprint,
        "parent": info.parent or "", "labels": info.n_labels, "items": info.n_items,
        "machine_labels_today": int((day_labels["label_source"] == "machine").sum()),
        "reviewed_labels_of_the_day": int((day_labels["label_source"] == "review").sum()),
        "partitions": dg.MetadataValue.json(info.partitions), "dvc_md5": info.dvc_md5,
        # kept in the Dagster event log, outside the data root: one more anchor for `verify`
        "manifest_sha256": info.manifest_sha256,
        "dvc_remote": info.remote,
        "path": dg.MetadataValue.path(str(store.releases_dir / info.version)),
        "quality_report": dg.MetadataValue.md((store.releases_dir / info.version / "quality_report.md").read_text()),
        "quality_report_html": dg.MetadataValue.path(str(store.releases_dir / info.version / "quality_report.html")),
        "git_tag": f"dataset-{info.version}",
    }, data_root.root))


defs = dg.Definitions(assets=[dataset_release])
