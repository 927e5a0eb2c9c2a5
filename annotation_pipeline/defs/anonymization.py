"""Anonymization wiring: only what leaves here may ever reach a vendor."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from annotation_pipeline.anonymize import anonymize_items, load_secret
from annotation_pipeline.anonymize_text import FieldPolicy
from annotation_pipeline.contracts import ANONYMIZED_ITEMS, REDACTION_LOG
from annotation_pipeline.defs.common import OWNERS, counts_metadata, daily_partitions, table_metadata
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.project_files import ANONYMIZATION_POLICY_PATH


@dg.multi_asset(
    group_name="anonymization", partitions_def=daily_partitions, can_subset=False,
    outs={
        "anonymized_items": dg.AssetOut(
            owners=OWNERS, kinds={"opencv", "parquet"},
            description="Items safe to show a vendor: images re-encoded without EXIF/XMP/GPS, faces and "
                        "licence plates blurred (OpenCV Haar cascades), personal data in metadata and free "
                        "text redacted or replaced by keyed pseudonyms (HMAC-SHA256).\n\n"
                        + ANONYMIZED_ITEMS.markdown()),
        "redaction_log": dg.AssetOut(
            owners=OWNERS, kinds={"parquet"},
            description="One row per redaction (kind, field, where, detector and version): the evidence an "
                        "auditor asks for.\n\n" + REDACTION_LOG.markdown()),
    },
)
def anonymize(context: dg.AssetExecutionContext, data_root: DataRoot, raw_items: pd.DataFrame):
    date = context.partition_key
    policy = FieldPolicy.from_json(ANONYMIZATION_POLICY_PATH)
    result = anonymize_items(raw_items, data_root.root, f"anonymized/{date}", secret=load_secret(), policy=policy)
    data_root.write_quarantine("anonymization", date, result.quarantine)
    # The re-identification map goes to the restricted store only, never beside vendor data.
    reid_path = data_root.restricted_dir() / "reidentification" / f"{date}.parquet"
    reid_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result.reidentification_map.to_parquet(reid_path, index=False)
    reid_path.chmod(0o600)
    log = result.redaction_log
    yield dg.Output(result.items, output_name="anonymized_items", metadata={
        **counts_metadata(len(raw_items), len(result.items), len(result.quarantine)),
        "redactions": int(result.items["n_redactions"].sum()) if len(result.items) else 0,
        **table_metadata(result.items.drop(columns=["metadata_json"])),
    })
    yield dg.Output(log, output_name="redaction_log", metadata={
        "by_kind": dg.MetadataValue.json(log.groupby("kind")["count"].sum().astype(int).to_dict()),
        "items_with_redactions": int(log["item_id"].nunique()),
        "detectors": dg.MetadataValue.json(sorted(set(log["detector"] + " " + log["detector_version"]))),
        **table_metadata(log),
    })


defs = dg.Definitions(assets=[anonymize])
