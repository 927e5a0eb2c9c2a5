"""Provenance strings: the annotation ids behind each merged object or label, joined per group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def join_strings_by_group(strings, group: np.ndarray, n_groups: int,
                          sep: str = " ") -> pd.api.extensions.ExtensionArray:
    """Concatenate ``strings`` per group code (in input order) with ``sep``; vectorized.

    Arrow does the work: the strings are taken in group order, viewed as one list per group
    (offsets from ``bincount``) and joined by ``binary_join`` in a single C++ call.
    """
    values = as_arrow_strings(strings)
    order = np.argsort(group, kind="stable")
    offsets = np.r_[0, np.cumsum(np.bincount(group, minlength=n_groups))].astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), values.take(pa.array(order)))
    joined = pc.binary_join(lists, pa.scalar(sep, pa.large_string()))
    return pd.arrays.ArrowStringArray(joined)


def as_arrow_strings(strings) -> pa.Array:
    if isinstance(strings, pd.Series):
        strings = strings.array
    if isinstance(strings, pa.ChunkedArray):
        return strings.combine_chunks().cast(pa.large_string())
    try:
        return pa.array(strings, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(np.asarray(strings, dtype=object).astype(str), type=pa.large_string())
