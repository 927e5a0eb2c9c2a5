"""Ingestion: a daily landing folder becomes ``raw_items``.

Each file is named by the hash of its bytes (the same upload twice is one item), checked to
be a decodable image of a supported format and reasonable size, and copied into the raw
store. Sidecar ``<file>.json`` metadata travels with its image. Nothing is dropped silently:
every landing file ends in ``raw_items``, in the duplicates count, or in the quarantine with a
reason.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from annotation_pipeline.anonymization.image import SUPPORTED_FORMATS, ImageSettings
from annotation_pipeline.contracts import RAW_ITEMS, item_id_for_bytes, quarantine_rows
from annotation_pipeline.layout import DataLayout

# One list of formats and one pixel limit for the whole pipeline: the anonymizer's.
MAX_PIXELS = ImageSettings().max_pixels
MAX_BYTES = 50 * 2**20


@dataclass
class IngestionResult:
    items: pd.DataFrame        # RAW_ITEMS
    quarantine: pd.DataFrame   # QUARANTINE, stage "ingestion"
    duplicates: pd.DataFrame   # source_file, item_id, duplicate_of
    n_received: int

    @property
    def counts(self) -> dict[str, int]:
        return {"received": self.n_received, "accepted": len(self.items),
                "duplicates": len(self.duplicates), "quarantined": len(self.quarantine)}


def _inspect_image(content: bytes) -> tuple[str, int, int] | str:
    """(media type, width, height) of a structurally sound image, else the reason it is not one.

    ``verify()`` walks the file's structure (PNG chunks and their CRCs, JPEG markers) without
    decoding pixels: anonymization decodes every image in full anyway, and quarantines what
    only a full decode can catch (a JPEG cut off inside its scan data), so decoding here too
    would do that work twice.
    """
    if not content:
        return "empty_file: the file has zero bytes; re-upload it"
    if len(content) > MAX_BYTES:
        return f"too_large: {len(content)} bytes exceeds the {MAX_BYTES} byte limit"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                fmt, (width, height) = img.format, img.size
                if fmt not in SUPPORTED_FORMATS:
                    return f"unsupported_format: {fmt} is not one of {', '.join(SUPPORTED_FORMATS)}"
                if width * height > MAX_PIXELS:
                    return f"decompression_bomb: {width}x{height} exceeds {MAX_PIXELS} pixels"
                img.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"decompression_bomb: {exc}"
    except UnidentifiedImageError:
        return "not_an_image: no image decoder recognizes this file"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt_image: {exc}"
    return Image.MIME.get(fmt, f"image/{fmt.lower()}"), width, height


def _read_sidecar(path: Path) -> tuple[str, str | None] | str:
    """(metadata JSON, caption) from ``<image>.json``, or the reason it cannot be read."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.exists():
        return "{}", None
    try:
        meta = json.loads(sidecar.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"undecodable_metadata: {sidecar.name} is not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return f"invalid_metadata: {sidecar.name} is not valid JSON ({exc.msg}, line {exc.lineno})"
    if not isinstance(meta, dict):
        return f"invalid_metadata: {sidecar.name} must hold a JSON object"
    caption = meta.get("notes") if isinstance(meta.get("notes"), str) else None
    return json.dumps(meta, sort_keys=True), caption


def ingest_landing_folder(landing_dir: Path, root: Path, partition_date: str) -> IngestionResult:
    """Read one landing folder into the raw store under ``root/raw/<date>/``."""
    files = sorted(p for p in landing_dir.iterdir() if p.is_file() and not p.name.endswith(".json")) \
        if landing_dir.exists() else []
    raw_dir = DataLayout(root).raw(partition_date)
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows, quarantined, dups = [], [], []
    seen: dict[str, str] = {}
    for path in files:  # one file at a time: each is decoded once, bounded memory
        content = path.read_bytes()
        item_id = item_id_for_bytes(content)
        if item_id in seen:
            dups.append({"source_file": path.name, "item_id": item_id, "duplicate_of": seen[item_id]})
            continue
        inspected = _inspect_image(content)
        sidecar = _read_sidecar(path)
        problem = inspected if isinstance(inspected, str) else sidecar if isinstance(sidecar, str) else None
        if problem:
            reason, _, detail = problem.partition(": ")
            quarantined.append((path.name, reason, f"{path.name}: {detail}"))
            continue
        seen[item_id] = path.name
        media_type, width, height = inspected
        metadata_json, caption = sidecar
        raw_path = raw_dir / f"{item_id}{path.suffix.lower()}"
        if not raw_path.exists():  # content-addressed: a rerun writes nothing new
            tmp = raw_path.with_suffix(raw_path.suffix + ".tmp")
            tmp.write_bytes(content)
            tmp.replace(raw_path)
        rows.append({
            "item_id": item_id, "partition_date": partition_date, "source_file": path.name,
            "raw_path": str(raw_path.relative_to(root)), "media_type": media_type,
            "width": width, "height": height, "byte_size": len(content),
            "metadata_json": metadata_json, "caption": caption,
        })
    items = RAW_ITEMS.conform(pd.DataFrame(rows, columns=RAW_ITEMS.column_names))
    quarantine = quarantine_rows("ingestion", partition_date, [q[0] for q in quarantined], "",
                                 [q[1] for q in quarantined], [q[2] for q in quarantined])
    return IngestionResult(items, quarantine,
                           pd.DataFrame(dups, columns=["source_file", "item_id", "duplicate_of"]),
                           n_received=len(files))
