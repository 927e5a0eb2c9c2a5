"""Ingestion wiring: a day's landing folder becomes ``raw_items``."""


import dagster as dg
import pandas as pd

from annotation_pipeline.contracts import RAW_ITEMS
from annotation_pipeline.defs.common import (
    OWNERS,
    contract_metadata,
    counts_metadata,
    daily_partitions,
    table_metadata,
    ui_metadata,
)
from annotation_pipeline.defs.resources import DataRoot
from annotation_pipeline.ingestion.landing import LandingFolderError, ingest_landing_folder
from annotation_pipeline.settings import load_settings


@dg.asset(
    group_name="ingestion", partitions_def=daily_partitions, owners=OWNERS, kinds={"python", "parquet"},
    metadata=contract_metadata(RAW_ITEMS),
    description="Raw items that landed in `landing/<date>/` (sub-folders included), named by the sha256 of "
                "their bytes. Byte-identical uploads are one item; unreadable, empty, unsupported or oversized "
                "files, bad sidecars, symbolic links, FIFOs and devices go to the quarantine with a reason, "
                "under a keyed pseudonym (`landing_<12 hex>`). Original file names and sidecars are kept only "
                "in the restricted store (`restricted/landing/<date>.parquet`, owner-only).\n\n"
                + RAW_ITEMS.markdown(),
)
def raw_items(context: dg.AssetExecutionContext, data_root: DataRoot) -> dg.Output[pd.DataFrame]:
    date = context.partition_key
    try:
        result = ingest_landing_folder(data_root.layout.landing(date), data_root.root, date,
                                       secret=load_settings().pseudonym_secret())
    except LandingFolderError as exc:
        raise dg.Failure(str(exc)) from None
    data_root.write_quarantine("ingestion", date, result.quarantine)
    if result.n_received == 0:
        context.log.warning(f"landing/{date}/ is empty or missing: nothing to ingest")
    return dg.Output(result.items, metadata=ui_metadata({
        **counts_metadata(result.n_received, len(result.items), len(result.quarantine),
                          duplicates=len(result.duplicates)),
        "quarantine_reasons": dg.MetadataValue.json(result.quarantine["reason"].value_counts().to_dict()),
        **table_metadata(result.items, RAW_ITEMS),
    }, data_root.root))


defs = dg.Definitions(assets=[raw_items])
