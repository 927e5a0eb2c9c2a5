"""What every stage's wiring shares: the partitions, owners and metadata helpers."""

from __future__ import annotations

import dagster as dg
import pandas as pd

# Nightly runs process the day that just ended; backfills reach back to the program's start.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01")

OWNERS = ["team:annotation-platform"]


def table_metadata(df: pd.DataFrame, preview_rows: int = 5, **extra) -> dict:
    """Row count, schema and a small preview: what a data engineer looks for first in the UI."""
    preview = df.head(preview_rows).drop(columns=[c for c in df.columns if df[c].dtype == object
                                                  and len(df) and isinstance(df[c].iloc[0], bytes)])
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=c, type=str(t)) for c, t in df.dtypes.items()]),
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "(empty)"),
        **extra,
    }


def counts_metadata(received: int, accepted: int, quarantined: int, **other: int) -> dict:
    """The reconciliation every stage reports: received = accepted + quarantined (+ other)."""
    total = accepted + quarantined + sum(other.values())
    if total != received:
        raise dg.Failure(f"counts do not reconcile: received {received} != accepted {accepted} + "
                         f"quarantined {quarantined} + {other}")
    return {"received": received, "accepted": accepted, "quarantined": quarantined,
            **{k: v for k, v in other.items()}, "reconciled": True}
