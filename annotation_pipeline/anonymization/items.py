"""Anonymization stage: raw items in, items safe for an outside workforce out, with an audit trail.

Pure Python (no Dagster); the asset calls :func:`anonymize_items` once per partition:

- metadata (the sidecar as received, from the restricted LANDING_ORIGINALS) is walked with a
  declared :class:`FieldPolicy` (:mod:`~annotation_pipeline.anonymization.metadata`): fields
  are dropped, pseudonymized (keyed HMAC-SHA256), treated as names, kept or redacted; every
  string that stays (kept or redacted fields, the caption) is scanned by the pattern
  detectors and the name finder of :mod:`annotation_pipeline.anonymization.text`, all rows
  at once;
- pixels go through :mod:`annotation_pipeline.anonymization.image` (EXIF/XMP/GPS stripped by
  re-encoding (PNG, or JPEG for JPEG uploads), faces and plates found and obscured, plus
  user-given regions), two images at a time on a 2-core machine;
- every redaction becomes a row of the redaction log (contract ``REDACTION_LOG``) and every
  pseudonym a row of the re-identification map, which the caller must keep in a restricted
  store (:func:`store_reidentification_map`), never beside vendor data;
- every input row ends in ``items`` or in ``quarantine`` with a reason: received = accepted +
  quarantined. Quarantine rows name an item by its raw store name, never by the uploaded name.

The secret for pseudonyms comes from the environment (:func:`load_secret`); it is used as
an HMAC key only and is never written anywhere.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.image import AnonymizedImage, ImageProblem, ImageSettings, anonymize_image
from annotation_pipeline.anonymization.metadata import redact_metadata
from annotation_pipeline.anonymization.reidentification import REIDENTIFICATION_MAP, store_reidentification_map
from annotation_pipeline.anonymization.text import FieldPolicy, FieldRule, PolicyError, default_policy
from annotation_pipeline.contracts import (
    ANONYMIZED_ITEMS,
    LANDING_ORIGINALS,
    QUARANTINE,
    RAW_ITEMS,
    REDACTION_LOG,
    quarantine_rows,
)
from annotation_pipeline.settings import MIN_SECRET_BYTES, SecretError, load_settings
from annotation_pipeline.settings import SECRET_ENV as SECRET_ENV_VAR

__all__ = [
    "AnonymizationResult", "FieldPolicy", "FieldRule", "ImageSettings", "PolicyError",
    "REIDENTIFICATION_MAP", "SECRET_ENV_VAR", "SecretError", "anonymize_items", "default_policy",
    "load_secret", "store_reidentification_map",
]

T = TypeVar("T")
STAGE = "anonymization"
_SAFE_ITEM_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")


def load_secret(env: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key for pseudonyms, from ``ANNOTATION_PIPELINE_PSEUDONYM_SECRET`` (validated in settings)."""
    return load_settings(env).pseudonym_secret()


@dataclass
class AnonymizationResult:
    """What one partition's anonymization produced; counts reconcile (received = accepted + quarantined)."""

    items: pd.DataFrame                 # ANONYMIZED_ITEMS
    redaction_log: pd.DataFrame         # REDACTION_LOG
    quarantine: pd.DataFrame            # QUARANTINE, stage "anonymization"
    # Original personal data: kept out of repr() so that logging the result cannot leak it.
    reidentification_map: pd.DataFrame = field(repr=False)  # REIDENTIFICATION_MAP
    received: int = 0

    @property
    def accepted(self) -> int:
        return len(self.items)

    @property
    def quarantined(self) -> int:
        return len(self.quarantine)

    def summary(self) -> dict[str, Any]:
        """Counts for asset metadata: nothing personal, nothing secret."""
        log = self.redaction_log
        return {
            "received": self.received, "accepted": self.accepted, "quarantined": self.quarantined,
            "redactions_by_kind": {str(k): int(v) for k, v in log.groupby("kind")["count"].sum().items()},
            "quarantine_reasons": {str(k): int(v) for k, v in self.quarantine["reason"].value_counts().items()},
            "pseudonyms": int(self.reidentification_map["pseudonym"].nunique()),
        }


class _Quarantine:
    """Collects quarantine rows; an item is quarantined once, for the first problem found."""

    def __init__(self, raw: pd.DataFrame) -> None:
        self.raw = raw
        self.bad = np.zeros(len(raw), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: np.ndarray, record_ref: str, reason: str, details: Sequence[str] | pd.Series) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        sub = self.raw[mask]
        chosen = np.asarray(details, dtype=object)[mask]
        self.parts.append(quarantine_rows(
            STAGE, sub["partition_date"].to_numpy(), sub["stored_name"].to_numpy(), record_ref, reason,
            chosen, item_id=sub["item_id"].to_numpy()))
        self.bad |= mask

    @property
    def ok_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.bad)

    def frame(self) -> pd.DataFrame:
        return QUARANTINE.conform(pd.concat(self.parts, ignore_index=True)) if self.parts else QUARANTINE.empty()


def _check_rows(raw: pd.DataFrame, root: Path, quarantine: _Quarantine) -> list[Any]:
    """Quarantine rows that cannot be worked on; return the parsed metadata documents."""
    ids = raw["item_id"]
    quarantine.add(~ids.str.fullmatch(_SAFE_ITEM_ID.pattern).to_numpy(dtype=bool), "item_id", "invalid_item_id",
                   "item_id " + ids + " is not a content-hash id (letters, digits, '-', '_')")
    quarantine.add(ids.duplicated().to_numpy(), "item_id", "duplicate_item_id",
                   "item_id " + ids + " appears more than once in the partition; ingestion dedupes by content hash")
    quarantine.add(raw["metadata_json"].isna().to_numpy(dtype=bool), "metadata_json", "missing_originals",
                   raw["stored_name"] + ": no accepted landing entry in the restricted store for this item; "
                   "re-run ingestion for the day")
    resolved_root = root.resolve()
    outside = raw["raw_path"].map(lambda p: not (resolved_root / p).resolve().is_relative_to(resolved_root))
    quarantine.add(outside.to_numpy(dtype=bool), "raw_path", "raw_path_outside_root",
                   "raw_path " + raw["raw_path"] + " points outside the data root; refusing to read it")
    # Ingestion parsed every sidecar with bounds (depth, numbers, strings); what is left to
    # catch is metadata from elsewhere that is not a JSON object.
    docs: list[Any] = [None] * len(raw)
    errors = [""] * len(raw)
    for i in quarantine.ok_rows:  # json.loads has no vectorized form: one parse per item
        source = raw.at[i, "stored_name"]
        try:
            docs[i] = json.loads(raw.at[i, "metadata_json"])
        except json.JSONDecodeError as exc:
            errors[i] = f"metadata_json of {source} is not valid JSON ({exc.msg} at char {exc.pos}); re-send the sidecar"
            continue
        except (ValueError, RecursionError) as exc:
            errors[i] = f"metadata_json of {source} cannot be parsed ({type(exc).__name__}); re-send the sidecar"
            continue
        if not isinstance(docs[i], dict):
            errors[i] = f"metadata_json of {source} is a JSON {type(docs[i]).__name__}, expected an object"
    quarantine.add(np.array([bool(e) for e in errors]), "metadata_json", "invalid_metadata_json", errors)
    return docs


def _with_originals(raw_items: pd.DataFrame, originals: pd.DataFrame) -> pd.DataFrame:
    """Raw items joined to their sidecars as received (restricted), plus the raw store name."""
    accepted = originals.loc[originals["outcome"] == "accepted", ["item_id", "metadata_json", "caption"]]
    raw = raw_items.reset_index(drop=True).merge(accepted.drop_duplicates("item_id"), on="item_id", how="left")
    raw["stored_name"] = raw["raw_path"].str.rsplit("/", n=1).str[-1]
    return raw


def _process_images(raw: pd.DataFrame, rows: np.ndarray, root: Path, out_dir: str, settings: ImageSettings,
                    regions: dict[str, np.ndarray], workers: int, meanwhile: Callable[[], T]
                    ) -> tuple[dict[int, AnonymizedImage | ImageProblem], T]:
    """Anonymize the images of ``rows`` concurrently; write each image atomically under out_dir.

    ``meanwhile`` runs on the calling thread while the workers decode and detect (the text
    redaction: about 6 % of the work, which otherwise waited for the images or they for it);
    its result is returned beside the outcomes.
    """
    out_root = root / out_dir
    out_root.mkdir(parents=True, exist_ok=True)
    raw_paths, item_ids = raw["raw_path"].astype(str).to_numpy(), raw["item_id"].astype(str).to_numpy()

    def process(i: int) -> AnonymizedImage | ImageProblem:
        source, item_id = raw_paths[i], item_ids[i]
        try:
            data = (root / source).read_bytes()
        except FileNotFoundError:
            return ImageProblem("missing_file", f"{source} does not exist under the data root; re-run ingestion")
        except OSError as exc:
            return ImageProblem("unreadable_file", f"{source} cannot be read ({exc.strerror})")
        result = anonymize_image(data, source, settings, regions.get(item_id))
        if isinstance(result, AnonymizedImage):
            target = out_root / f"{item_id}{result.suffix}"
            tmp = out_root / f"{item_id}{result.suffix}.tmp"
            tmp.write_bytes(result.data)
            os.replace(tmp, target)  # a crash never leaves a half-written image for the vendor
        return result

    # Our workers already keep every core busy: OpenCV's own thread pool on top of them only
    # adds contention (640x480 on 2 cores: 19.7 img/s before, 25 and 33 in two runs after), so it is off meanwhile.
    previous_threads = cv2.getNumThreads()
    if workers > 1:
        cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = pool.map(process, rows.tolist())  # submits every image now
            try:
                other = meanwhile()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # no more images for a failed partition
                raise
            return dict(zip(rows.tolist(), pending)), other
    finally:
        cv2.setNumThreads(previous_threads)


def _image_log(outcomes: dict[int, AnonymizedImage], item_ids: np.ndarray) -> pd.DataFrame:
    records = [(item_ids[i], r.kind, "image", r.count, *(r.box or (np.nan,) * 4), r.action, r.detector,
                r.detector_version) for i, outcome in outcomes.items() for r in outcome.redactions]
    return pd.DataFrame(records, columns=REDACTION_LOG.column_names)


def anonymize_items(
    raw_items: pd.DataFrame,
    originals: pd.DataFrame,
    root: Path,
    out_dir: str,
    *,
    secret: bytes,
    policy: FieldPolicy | None = None,
    sensitive_regions: Mapping[str, Iterable[Sequence[float]]] | None = None,
    settings: ImageSettings = ImageSettings(),
    workers: int = 2,
) -> AnonymizationResult:
    """Anonymize one partition of raw items (contract RAW_ITEMS) with their originals (LANDING_ORIGINALS).

    Reads ``root / raw_path`` for each item, writes ``root / out_dir / <item_id>.png`` (``.jpg``
    for JPEG uploads, see ImageSettings.jpeg_quality), and
    returns items (ANONYMIZED_ITEMS, ``image_path`` relative to ``root``), the redaction log,
    the quarantine (stage "anonymization") and the re-identification map.

    ``sensitive_regions`` maps item_id to boxes (x_min, y_min, x_max, y_max, pixels of the
    upright image) that are obscured whatever the detectors find. ``workers`` images are
    processed concurrently (OpenCV and Pillow release the GIL).
    """
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise SecretError(f"secret must be at least {MIN_SECRET_BYTES} bytes (see load_secret)")
    RAW_ITEMS.validate(raw_items)
    LANDING_ORIGINALS.validate(originals)
    policy = policy or default_policy()
    root = Path(root)
    raw = _with_originals(raw_items, originals)
    item_ids = raw["item_id"].astype(str).to_numpy()
    quarantine = _Quarantine(raw)

    docs = _check_rows(raw, root, quarantine)
    regions = {str(k): np.asarray(list(v), dtype=np.float64).reshape(-1, 4)
               for k, v in (sensitive_regions or {}).items()}
    rows = quarantine.ok_rows
    outcomes, text = _process_images(raw, rows, root, out_dir, settings, regions, workers,
                                     meanwhile=lambda: redact_metadata(raw, docs, rows, policy, secret))
    failed = {i: o for i, o in outcomes.items() if isinstance(o, ImageProblem)}
    for reason in sorted({o.reason for o in failed.values()}):
        mask = np.zeros(len(raw), dtype=bool)
        details = [""] * len(raw)
        for i, problem in failed.items():
            if problem.reason == reason:
                mask[i], details[i] = True, problem.detail
        quarantine.add(mask, "", reason, details)
    images = {i: o for i, o in outcomes.items() if isinstance(o, AnonymizedImage)}

    ok = quarantine.ok_rows
    accepted_ids = set(item_ids[ok])
    log = pd.concat([p for p in [*text.log, _image_log(images, item_ids)] if len(p)] or [REDACTION_LOG.empty()],
                    ignore_index=True)
    log = REDACTION_LOG.conform(log[log["item_id"].isin(accepted_ids)])
    reid = pd.concat([p for p in text.reid if len(p)] or [REIDENTIFICATION_MAP.empty()], ignore_index=True)
    reid = REIDENTIFICATION_MAP.conform(reid[reid["item_id"].isin(accepted_ids)].drop_duplicates())
    items = pd.DataFrame({
        "item_id": item_ids[ok],
        "partition_date": raw["partition_date"].to_numpy()[ok],
        "image_path": [f"{out_dir.rstrip('/')}/{item_ids[i]}{images[i].suffix}" for i in ok],
        "width": [images[i].width for i in ok], "height": [images[i].height for i in ok],
        "metadata_json": [json.dumps(text.documents[i], sort_keys=True, ensure_ascii=False) for i in ok],
        "caption": [text.captions[i] for i in ok],
    })
    items["n_redactions"] = items["item_id"].map(log.groupby("item_id")["count"].sum()).fillna(0).astype("int64")
    result = AnonymizationResult(ANONYMIZED_ITEMS.conform(items), log, quarantine.frame(), reid, len(raw))
    if result.accepted + result.quarantined != len(raw):  # an invariant, checked even under -O
        raise RuntimeError(f"anonymization lost items: {len(raw)} received, {result.accepted} accepted, "
                           f"{result.quarantined} quarantined")
    return result
