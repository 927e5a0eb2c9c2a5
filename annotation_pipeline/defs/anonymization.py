"""Anonymization wiring: only what leaves here may ever reach a vendor."""


import dagster as dg
import pandas as pd

from annotation_pipeline.anonymization.items import anonymize_items, load_secret, store_reidentification_map
from annotation_pipeline.anonymization.text import FieldPolicy
from annotation_pipeline.contracts import ANONYMIZED_ITEMS, REDACTION_LOG
from annotation_pipeline.defs.common import (
    OWNERS,
    contract_metadata,
    counts_metadata,
    daily_partitions,
    table_metadata,
    ui_metadata,
)
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.ingestion.landing import read_landing_originals
from annotation_pipeline.layout import project_files


@dg.multi_asset(
    group_name="anonymization", partitions_def=daily_partitions, can_subset=False,
    outs={
        "anonymized_items": dg.AssetOut(
            owners=OWNERS, kinds={"opencv", "parquet"},
            metadata=contract_metadata(ANONYMIZED_ITEMS),
            description="Items safe to show a vendor: images re-encoded without EXIF/XMP/GPS, faces and "
                        "licence plates blurred (OpenCV Haar cascades), personal data in metadata and free "
                        "text redacted or replaced by keyed pseudonyms (HMAC-SHA256).\n\n"
                        + ANONYMIZED_ITEMS.markdown()),
        "redaction_log": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            metadata=contract_metadata(REDACTION_LOG),
            description="One row per redaction (kind, field, where, detector and version): the evidence an "
                        "auditor asks for.\n\n" + REDACTION_LOG.markdown()),
    },
)
def anonymize(context: dg.AssetExecutionContext, data_root: DataRoot, raw_items: pd.DataFrame):
    date = context.partition_key
    policy = FieldPolicy.from_json(project_files().anonymization_policy)
    # The sidecars as received live in the restricted store only; raw_items is pseudonymous.
    originals = read_landing_originals(data_root.layout, date)
    result = anonymize_items(raw_items, originals, data_root.root,
                             data_root.layout.relative(data_root.layout.anonymized(date)),
                             secret=load_secret(), policy=policy)
    data_root.write_quarantine("anonymization", date, result.quarantine)
    # The re-identification map goes to the restricted store only, never beside vendor data.
    store_reidentification_map(result.reidentification_map, data_root.layout.reidentification, date,
                               vendor_dirs=[data_root.layout.vendors, data_root.layout.anonymized_store])
    summary = result.summary()
    log = result.redaction_log
    yield dg.Output(result.items, output_name="anonymized_items", metadata=ui_metadata({
        **counts_metadata(result.received, result.accepted, result.quarantined),
        "redactions": int(result.items["n_redactions"].sum()) if len(result.items) else 0,
        "pseudonyms": summary["pseudonyms"],
        "quarantine_reasons": dg.MetadataValue.json(summary["quarantine_reasons"]),
        **table_metadata(result.items, ANONYMIZED_ITEMS),
    }, data_root.root))
    yield dg.Output(log, output_name="redaction_log", metadata=ui_metadata({
        "by_kind": dg.MetadataValue.json(summary["redactions_by_kind"]),
        "items_with_redactions": int(log["item_id"].nunique()),
        "detectors": dg.MetadataValue.json(sorted(set(log["detector"] + " " + log["detector_version"]))),
        **table_metadata(log, REDACTION_LOG),
    }, data_root.root))


defs = dg.Definitions(assets=[anonymize])
