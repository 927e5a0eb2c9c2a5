"""How much gold the next batch should carry, as the last judged batch asked.

When the gold gate cannot tell (too little gold), the intake step records how many gold tasks
would have decided; the handoff of a later batch reads the latest record of a day up to its
own and sends at least that many. A judged batch records 0, so the default comes back. One
small JSON file per (vendor, day): two partitions at once never write the same file, and a
rerun of a day replaces its own record.
"""

from __future__ import annotations

import json
from pathlib import Path

from annotation_pipeline.atomic_files import write_bytes_atomic


def record_gold_demand(path: Path, gold_tasks: int, *, partition_date: str, reason: str = "") -> Path:
    """Write the day's demand (``gold_tasks`` = 0: none beyond the default)."""
    content = {"partition_date": partition_date, "gold_tasks": int(gold_tasks), "reason": reason}
    return write_bytes_atomic(Path(path), json.dumps(content, indent=1, sort_keys=True).encode())


def gold_tasks_demanded(folder: Path, partition_date: str) -> int:
    """Gold tasks asked for by the latest record dated on or before ``partition_date`` (0 if none).

    A record that cannot be read asks for nothing: it must never stop a handoff.
    """
    days = sorted(p for p in Path(folder).glob("*.json") if p.stem <= partition_date)
    if not days:
        return 0
    try:
        return max(0, int(json.loads(days[-1].read_text())["gold_tasks"]))
    except (OSError, ValueError, KeyError, TypeError):
        return 0
