"""The audit log: one JSON line per event under ``ROOT/audit/audit.jsonl``, appended, never rewritten."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from annotation_pipeline.layout import DataLayout


def append_audit_event(root: Path, event: str, **fields) -> None:
    """Append one event; fsync'd so that a crash right after cannot lose it."""
    path = DataLayout(root).audit_log
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": datetime.now(timezone.utc).isoformat(), "event": event, **fields}, default=str)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
