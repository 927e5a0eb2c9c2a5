"""Anonymization stage: raw items in, items safe for an outside workforce out, with an audit trail.

Pure Python (no Dagster); the asset calls :func:`anonymize_items` once per partition:

- metadata (``metadata_json``) is walked with a declared :class:`FieldPolicy`: fields are
  dropped, pseudonymized (keyed HMAC-SHA256), treated as names, kept or redacted; every string
  that stays (kept or redacted fields, the caption) is scanned by the pattern detectors and
  the name finder of :mod:`annotation_pipeline.anonymization.text`, all rows at once;
- pixels go through :mod:`annotation_pipeline.anonymization.image` (EXIF/XMP/GPS stripped by
  re-encoding (PNG, or JPEG for JPEG uploads), faces and plates found by OpenCV Haar cascades and obscured, plus
  user-given regions), two images at a time on a 2-core machine;
- every redaction becomes a row of the redaction log (contract ``REDACTION_LOG``) and every
  pseudonym a row of the re-identification map, which the caller must keep in a restricted
  store (:func:`store_reidentification_map`), never beside vendor data;
- every input row ends in ``items`` or in ``quarantine`` with a reason: received = accepted +
  quarantined.

The secret for pseudonyms comes from the environment (:func:`load_secret`); it is used as
an HMAC key only and is never written anywhere.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.image import AnonymizedImage, ImageProblem, ImageSettings, anonymize_image
from annotation_pipeline.anonymization.text import (
    TEXT_DETECTORS_VERSION,
    FieldPolicy,
    FieldRule,
    NameFinder,
    PolicyError,
    default_policy,
    pseudonymize,
    scan_texts,
)
from annotation_pipeline.contracts import (
    ANONYMIZED_ITEMS,
    QUARANTINE,
    RAW_ITEMS,
    REDACTION_LOG,
    Column,
    TableContract,
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


# --------------------------------------------------------------------------------------------
# Metadata walk
# --------------------------------------------------------------------------------------------

_DROPPED = object()


@dataclass
class _Leaves:
    """Scalar metadata values of a partition, one entry per value, plus where to write it back."""

    row: list[int] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    is_text: list[bool] = field(default_factory=list)
    slot: list[tuple[Any, Any]] = field(default_factory=list)  # (container, key) to write back
    drops: list[tuple[int, str, str]] = field(default_factory=list)

    def add(self, row: int, path: str, rule: FieldRule, text: str, is_text: bool, slot: tuple[Any, Any]) -> None:
        self.row.append(row)
        self.path.append(path)
        self.action.append(rule.action)
        self.kind.append("name" if rule.action == "name" else rule.kind)
        self.text.append(text)
        self.is_text.append(is_text)
        self.slot.append(slot)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"row": self.row, "path": self.path, "action": self.action,
                             "kind": self.kind, "text": pd.array(self.text, dtype="string"),
                             "is_text": self.is_text})


def _collect_leaves(doc: dict, row: int, policy: FieldPolicy, rules: dict[str, FieldRule],
                    leaves: _Leaves) -> dict:
    """Copy ``doc`` without dropped fields, recording every scalar that stays as a leaf."""

    def rule_of(path: str) -> FieldRule:
        if path not in rules:
            rules[path] = policy.rule_for(path)
        return rules[path]

    def visit(value: Any, path: str, container: Any, key: Any) -> Any:
        rule = rule_of(path)
        if rule.action == "drop":
            leaves.drops.append((row, path, rule.kind))
            return _DROPPED
        if rule.action in ("pseudonymize", "name") and isinstance(value, (dict, list)):
            # The whole subtree is one value (canonical JSON, so key order does not matter).
            leaves.add(row, path, rule, json.dumps(value, sort_keys=True, ensure_ascii=False), True,
                       (container, key))
            return value
        if isinstance(value, dict):
            copy: dict = {}
            for k, v in value.items():
                copy[k] = None
                result = visit(v, f"{path}.{k}" if path else str(k), copy, k)
                if result is _DROPPED:
                    del copy[k]
                else:
                    copy[k] = result
            return copy
        if isinstance(value, list):
            # Elements share the list's path, hence its rule: they are all kept or all dropped.
            copy_list: list = [None] * len(value)
            for i, v in enumerate(value):
                copy_list[i] = visit(v, path, copy_list, i)
            return copy_list
        if value is None or isinstance(value, bool):
            return value  # no personal data fits in null/true/false
        leaves.add(row, path, rule, str(value), isinstance(value, str), (container, key))
        return value

    root: dict = {}
    for k, v in doc.items():
        result = visit(v, str(k), root, k)
        if result is not _DROPPED:
            root[k] = result
    return root


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------

def _log_frame(rows: dict[str, Sequence[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in ("x_min", "y_min", "x_max", "y_max"):
        if col not in frame:
            frame[col] = np.nan
    return frame


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
            STAGE, sub["partition_date"].to_numpy(), sub["source_file"].to_numpy(), record_ref, reason,
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
    resolved_root = root.resolve()
    outside = raw["raw_path"].map(lambda p: not (resolved_root / p).resolve().is_relative_to(resolved_root))
    quarantine.add(outside.to_numpy(dtype=bool), "raw_path", "raw_path_outside_root",
                   "raw_path " + raw["raw_path"] + " points outside the data root; refusing to read it")
    # Text is already decoded: ingestion quarantines sidecars that are not UTF-8, and the
    # contract's Arrow-backed strings cannot hold undecodable bytes. What is left to catch is
    # metadata that is not a JSON object.
    docs: list[Any] = [None] * len(raw)
    errors = [""] * len(raw)
    for i in quarantine.ok_rows:  # json.loads has no vectorized form: one parse per item
        source = raw.at[i, "source_file"]
        try:
            docs[i] = json.loads(raw.at[i, "metadata_json"])
        except json.JSONDecodeError as exc:
            errors[i] = f"metadata_json of {source} is not valid JSON ({exc.msg} at char {exc.pos}); re-send the sidecar"
            continue
        if not isinstance(docs[i], dict):
            errors[i] = f"metadata_json of {source} is a JSON {type(docs[i]).__name__}, expected an object"
    quarantine.add(np.array([bool(e) for e in errors]), "metadata_json", "invalid_metadata_json", errors)
    return docs


@dataclass
class _TextOutcome:
    documents: list[dict | None]  # metadata after the policy, by raw row
    captions: list[str | None]
    log: list[pd.DataFrame]
    reid: list[pd.DataFrame]


def _redact_text(raw: pd.DataFrame, docs: list[Any], rows: np.ndarray, policy: FieldPolicy,
                 secret: bytes) -> _TextOutcome:
    """Apply the field policy to metadata and scan every string that stays, all rows at once."""
    leaves = _Leaves()
    rules: dict[str, FieldRule] = {}
    documents: list[dict | None] = [None] * len(raw)
    for i in rows:
        documents[i] = _collect_leaves(docs[i], int(i), policy, rules, leaves)
    caption_rule = policy.rule_for("caption")
    captions: list[Any] = raw["caption"].astype(object).where(raw["caption"].notna(), None).tolist()
    for i in rows:
        if captions[i] is None:
            continue
        if caption_rule.action == "drop":
            leaves.drops.append((int(i), "caption", caption_rule.kind))
            captions[i] = None
        else:
            leaves.add(int(i), "caption", caption_rule, captions[i], True, (captions, int(i)))
    frame = leaves.frame()
    item_ids = raw["item_id"].astype(str).to_numpy()
    new_text = frame["text"].copy()
    policy_version = f"policy {policy.version}"
    log: list[pd.DataFrame] = []
    reid: list[pd.DataFrame] = []

    # Declared names and pseudonymized fields: whole value -> keyed pseudonym (one HMAC per
    # distinct value).
    whole = frame[frame["action"].isin(["pseudonymize", "name"])]
    known_names: dict[str, str] = {}
    for kind, group in whole.groupby("kind", sort=False):
        uniques = group["text"].unique()
        mapping = dict(zip(uniques, pseudonymize(uniques, str(kind), secret)))
        pseudonyms = group["text"].map(mapping)
        new_text.loc[group.index] = pseudonyms
        if kind == "name":
            known_names.update(mapping)
        where = item_ids[group["row"].to_numpy()]
        reid.append(pd.DataFrame({"pseudonym": pseudonyms.to_numpy(), "kind": str(kind),
                                  "field": group["path"].to_numpy(), "original_value": group["text"].to_numpy(),
                                  "item_id": where}))
        log.append(_log_frame({"item_id": where, "kind": str(kind), "field": group["path"].to_numpy(),
                               "count": 1, "action": "pseudonymize", "detector": "field-policy+hmac-sha256",
                               "detector_version": policy_version}))

    # Everything else that stays is scanned: redact (with name heuristics) and keep.
    scanned = frame[frame["action"].isin(["redact", "keep"])]
    finder = NameFinder(known_names)
    if len(scanned):
        texts, hits = scan_texts(scanned["text"], scanned["action"] == "redact", finder)
        new_text.loc[scanned.index] = texts
        where = frame.loc[hits["row"].to_numpy()]
        log.append(_log_frame({"item_id": item_ids[where["row"].to_numpy()], "kind": hits["kind"].to_numpy(),
                               "field": where["path"].to_numpy(), "count": hits["count"].to_numpy(),
                               "action": hits["action"].to_numpy(), "detector": hits["detector"].to_numpy(),
                               "detector_version": TEXT_DETECTORS_VERSION}))
        if finder.full_pattern is not None:
            # Declared names met in free text were pseudonymized there too: map them as well.
            found = scanned["text"].str.extractall(f"(?P<name>{finder.full_pattern.pattern})",
                                                   flags=finder.full_pattern.flags)
            at = frame.loc[found.index.get_level_values(0)]
            reid.append(pd.DataFrame({"pseudonym": found["name"].map(finder.pseudonym_for_text).to_numpy(),
                                      "kind": "name", "field": at["path"].to_numpy(),
                                      "original_value": found["name"].to_numpy(),
                                      "item_id": item_ids[at["row"].to_numpy()]}))
    if leaves.drops:
        drops = pd.DataFrame(leaves.drops, columns=["row", "path", "kind"])
        log.append(_log_frame({"item_id": item_ids[drops["row"].to_numpy()],
                               "kind": drops["kind"].where(drops["kind"] != "value", "field").to_numpy(),
                               "field": drops["path"].to_numpy(), "count": 1, "action": "drop",
                               "detector": "field-policy", "detector_version": policy_version}))

    # Write changed values back into the copied documents (numbers stay numbers if untouched).
    for pos in np.flatnonzero((new_text != frame["text"]).fillna(True).to_numpy()):
        container, key = leaves.slot[pos]
        container[key] = str(new_text.iat[pos])
    return _TextOutcome(documents, captions, log, reid)


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
    root: Path,
    out_dir: str,
    *,
    secret: bytes,
    policy: FieldPolicy | None = None,
    sensitive_regions: Mapping[str, Iterable[Sequence[float]]] | None = None,
    settings: ImageSettings = ImageSettings(),
    workers: int = 2,
) -> AnonymizationResult:
    """Anonymize one partition of raw items (contract RAW_ITEMS).

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
    policy = policy or default_policy()
    root = Path(root)
    raw = raw_items.reset_index(drop=True)
    item_ids = raw["item_id"].astype(str).to_numpy()
    quarantine = _Quarantine(raw)

    docs = _check_rows(raw, root, quarantine)
    regions = {str(k): np.asarray(list(v), dtype=np.float64).reshape(-1, 4)
               for k, v in (sensitive_regions or {}).items()}
    rows = quarantine.ok_rows
    outcomes, text = _process_images(raw, rows, root, out_dir, settings, regions, workers,
                                     meanwhile=lambda: _redact_text(raw, docs, rows, policy, secret))
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
