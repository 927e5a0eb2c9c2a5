"""The re-identification map: pseudonym -> original value, kept in the restricted store only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from annotation_pipeline.contracts import Column, TableContract

REIDENTIFICATION_MAP = TableContract(
    "reidentification_map",
    "Pseudonym -> original value. Restricted store only: never beside vendor data.",
    {
        "pseudonym": Column("string", "pseudonym as shipped, e.g. person_3f9a1c2b4d5e"),
        "kind": Column("string", "name, email, ip, ... (the pseudonym's kind)"),
        "field": Column("string", "metadata field or 'caption' where the value was found"),
        "original_value": Column("string", "the personal data the pseudonym stands for"),
        "item_id": Column("string", "item the value was found in"),
    },
)



def store_reidentification_map(reid: pd.DataFrame, restricted_dir: Path, partition: str, *,
                               vendor_dirs: Iterable[Path] = ()) -> Path:
    """Write the map as Parquet readable by its owner only, refusing any place near vendor data.

    ``restricted_dir`` must not be inside (or contain) any of ``vendor_dirs`` (outboxes,
    anonymized image folders): the map would otherwise travel with what we ship.
    """
    restricted = Path(restricted_dir).resolve()
    for vendor in vendor_dirs:
        vendor = Path(vendor).resolve()
        if restricted.is_relative_to(vendor) or vendor.is_relative_to(restricted):
            raise ValueError(f"refusing to store the re-identification map in {restricted}: it overlaps "
                             f"the vendor-facing folder {vendor}; choose a restricted store elsewhere")
    restricted.mkdir(parents=True, exist_ok=True)
    restricted.chmod(stat.S_IRWXU)
    target = restricted / f"reidentification-{partition}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    REIDENTIFICATION_MAP.conform(reid).to_parquet(tmp, index=False)
    tmp.chmod(stat.S_IRUSR | stat.S_IWUSR)
    os.replace(tmp, target)
    return target
