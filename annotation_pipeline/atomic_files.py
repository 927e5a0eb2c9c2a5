"""Write a file so that readers see the old content or the new, never half of it.

The new content goes to a hidden temporary file in the same folder, then ``os.replace``
swaps it in (atomic on POSIX within one filesystem). A crash midway leaves at most the
temporary file, which the next write replaces.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to produce the content, then swap it in as ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    tmp.replace(path)
    return path


def write_bytes_atomic(path: Path, content: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(content))


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))
