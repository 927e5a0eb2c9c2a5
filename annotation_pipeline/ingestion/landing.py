"""Ingestion: a daily landing folder becomes ``raw_items``, with the originals kept restricted.

Each file is named by the hash of its bytes (the same upload twice is one item), checked to
be a decodable image of a supported format and reasonable size, and copied into the raw
store as ``raw/<date>/<item_id>.<ext>`` (owner-only, like the restricted store: the bytes
still carry EXIF). Sidecar ``<file>.json`` metadata travels with its image.

Nothing is dropped silently and nothing stops the day: every entry the walk finds
(:mod:`~annotation_pipeline.ingestion.entries` says what an entry is) ends accepted,
deduplicated or quarantined with a reason, and any exception about one entry becomes that
entry's quarantine reason.

Original names never leave the restricted store. Everywhere else an entry is called by a
keyed pseudonym (``landing_<12 hex>``: HMAC-SHA256 of the partition and the name, so nobody
without the secret can confirm a guessed name) and an accepted item by its raw store name.
``restricted/landing/<date>.parquet`` (contract LANDING_ORIGINALS, mode 0600) maps every
pseudonym back to the upload and holds the sidecars as received, for anonymization and for
an auditor.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from annotation_pipeline.anonymization.image import SUPPORTED_FORMATS, ImageSettings
from annotation_pipeline.atomic_files import write_atomic
from annotation_pipeline.contracts import LANDING_ORIGINALS, RAW_ITEMS, item_id_for_bytes, quarantine_rows
from annotation_pipeline.ingestion.entries import (
    EntryProblem,
    LandingEntry,
    list_landing_entries,
    read_regular_file,
    read_sidecar_bytes,
)
from annotation_pipeline.ingestion.sidecar import MAX_SIDECAR_BYTES, SidecarProblem, parse_sidecar
from annotation_pipeline.layout import DataLayout

# One list of formats and one pixel limit for the whole pipeline: the anonymizer's.
MAX_PIXELS = ImageSettings().max_pixels
MAX_BYTES = 50 * 2**20
# The raw store's extension comes from the decoded format, never from the uploaded name (a
# 250-byte name's "suffix" would make the stored name too long, and a name can lie).
EXTENSION_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
OWNER_ONLY_DIR, OWNER_ONLY_FILE = stat.S_IRWXU, stat.S_IRUSR | stat.S_IWUSR
DUPLICATE_COLUMNS = ["entry", "item_id", "duplicate_of"]


class LandingFolderError(OSError):
    """The day's landing folder itself cannot be read (not one entry: the whole day)."""


@dataclass
class IngestionResult:
    items: pd.DataFrame        # RAW_ITEMS
    quarantine: pd.DataFrame   # QUARANTINE, stage "ingestion"; source_file holds the entry pseudonym
    duplicates: pd.DataFrame   # entry, item_id, duplicate_of (the accepted item's raw store name)
    n_received: int
    # Original names and sidecars: kept out of repr() so that logging the result cannot leak them.
    originals: pd.DataFrame = field(repr=False, default_factory=LANDING_ORIGINALS.empty)

    @property
    def counts(self) -> dict[str, int]:
        return {"received": self.n_received, "accepted": len(self.items),
                "duplicates": len(self.duplicates), "quarantined": len(self.quarantine)}


def entry_pseudonym(relative: str, partition_date: str, secret: bytes) -> str:
    """``landing_<12 hex>``: keyed, so the name cannot be guessed back from it without the secret."""
    message = b"landing\x1f" + partition_date.encode() + b"\x1f" + os.fsencode(relative)
    return "landing_" + hmac.new(secret, message, hashlib.sha256).hexdigest()[:12]


def _inspect_image(content: bytes) -> tuple[str, int, int, str] | str:
    """(media type, width, height, format) of a structurally sound image, else the reason it is not one.

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
    return Image.MIME.get(fmt, f"image/{fmt.lower()}"), width, height, fmt


def _store_raw(raw_dir: Path, name: str, content: bytes) -> None:
    raw_path = raw_dir / name
    if raw_path.exists():  # content-addressed: a rerun writes nothing new
        return
    tmp = raw_dir / f".{name}.{os.getpid()}.tmp"  # per process: two runs at once never share a temp file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, OWNER_ONLY_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(tmp, raw_path)


@dataclass
class _Accepted:
    item_id: str
    name: str          # raw store name: <item_id>.<ext>
    media_type: str
    width: int
    height: int
    size: int
    metadata_json: str
    caption: str | None


def _examine(entry: LandingEntry, raw_dir: Path, seen: dict[str, str]) -> _Accepted | tuple[str, str]:
    """One entry's fate: an accepted item, ("duplicate", item_id) or raises EntryProblem."""
    if entry.problem is not None:
        raise entry.problem
    content = read_regular_file(entry.path, MAX_BYTES)
    item_id = item_id_for_bytes(content)
    if item_id in seen:
        return "duplicate", item_id
    inspected = _inspect_image(content)
    if isinstance(inspected, str):
        reason, _, detail = inspected.partition(": ")
        raise EntryProblem(reason, detail)
    sidecar_bytes = read_sidecar_bytes(entry, MAX_SIDECAR_BYTES)
    try:
        sidecar = parse_sidecar(sidecar_bytes) if sidecar_bytes is not None else None
    except SidecarProblem as problem:
        raise EntryProblem(problem.reason, problem.detail) from None
    media_type, width, height, fmt = inspected
    name = item_id + EXTENSION_BY_FORMAT.get(fmt, "." + fmt.lower())
    _store_raw(raw_dir, name, content)
    seen[item_id] = name
    return _Accepted(item_id, name, media_type, width, height, len(content),
                     sidecar.metadata_json if sidecar else "{}", sidecar.caption if sidecar else None)


def ingest_landing_folder(landing_dir: Path, root: Path, partition_date: str, *, secret: bytes) -> IngestionResult:
    """Read one landing folder into the raw store under ``root/raw/<date>/``.

    Also writes the day's LANDING_ORIGINALS to the restricted store (``secret`` keys the
    entry pseudonyms; use the pseudonym secret). Raises LandingFolderError only when the
    folder itself cannot be listed.
    """
    layout = DataLayout(root)
    try:
        entries = list_landing_entries(Path(landing_dir))
    except OSError as exc:
        raise LandingFolderError(f"landing/{partition_date}/ cannot be listed ({exc.strerror}); "
                                 "check that it is a readable folder") from None
    raw_dir = layout.raw(partition_date)
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.chmod(OWNER_ONLY_DIR)
    rows, quarantined, dups, originals = [], [], [], []
    seen: dict[str, str] = {}
    for entry in entries:  # one file at a time: each is read once, bounded memory
        pseudonym = entry_pseudonym(entry.relative, partition_date, secret)
        original = {"entry": pseudonym, "partition_date": partition_date, "source_file": entry.display_name,
                    "outcome": "quarantined", "item_id": None, "metadata_json": None, "caption": None}
        originals.append(original)
        try:
            outcome = _examine(entry, raw_dir, seen)
        except EntryProblem as problem:
            quarantined.append((pseudonym, problem.reason, f"{pseudonym}: {problem.detail}"))
            continue
        except Exception as exc:  # noqa: BLE001 - one entry must never stop the day
            detail = (f"{pseudonym}: {type(exc).__name__} while ingesting this entry; the rest of the day "
                      "went on. Report it with the entry name")
            quarantined.append((pseudonym, "ingestion_error", detail))
            continue
        if isinstance(outcome, tuple):
            dups.append({"entry": pseudonym, "item_id": outcome[1], "duplicate_of": seen[outcome[1]]})
            original.update(outcome="duplicate", item_id=outcome[1])
            continue
        original.update(outcome="accepted", item_id=outcome.item_id, metadata_json=outcome.metadata_json,
                        caption=outcome.caption)
        rows.append({
            "item_id": outcome.item_id, "partition_date": partition_date,
            "raw_path": layout.relative(raw_dir / outcome.name), "media_type": outcome.media_type,
            "width": outcome.width, "height": outcome.height, "byte_size": outcome.size,
        })
    items = RAW_ITEMS.conform(pd.DataFrame(rows, columns=RAW_ITEMS.column_names))
    quarantine = quarantine_rows("ingestion", partition_date, [q[0] for q in quarantined], "",
                                 [q[1] for q in quarantined], [q[2] for q in quarantined])
    result = IngestionResult(items, quarantine, pd.DataFrame(dups, columns=DUPLICATE_COLUMNS),
                             n_received=len(entries),
                             originals=LANDING_ORIGINALS.conform(
                                 pd.DataFrame(originals, columns=LANDING_ORIGINALS.column_names)))
    store_landing_originals(result.originals, layout, partition_date)
    return result


def store_landing_originals(originals: pd.DataFrame, layout: DataLayout, partition_date: str) -> Path:
    """Write LANDING_ORIGINALS owner-only (folders 0700, file 0600), atomically; replaced on a rerun."""
    target = layout.landing_originals(partition_date)
    for folder in (layout.restricted, target.parent):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(OWNER_ONLY_DIR)

    def write(tmp: Path) -> None:
        LANDING_ORIGINALS.conform(originals).to_parquet(tmp, index=False)
        tmp.chmod(OWNER_ONLY_FILE)

    return write_atomic(target, write)


def read_landing_originals(layout: DataLayout, partition_date: str) -> pd.DataFrame:
    """The day's LANDING_ORIGINALS (empty when ingestion has not run for the day)."""
    path = layout.landing_originals(partition_date)
    return LANDING_ORIGINALS.conform(pd.read_parquet(path)) if path.exists() else LANDING_ORIGINALS.empty()
