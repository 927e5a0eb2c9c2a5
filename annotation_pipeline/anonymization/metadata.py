"""Personal data in item metadata and captions: the field policy applied, all rows scanned at once.

Part of the anonymization stage (:mod:`annotation_pipeline.anonymization.items` calls
:func:`redact_metadata`): every scalar of every item's metadata becomes a *leaf* with its
rule; declared names and pseudonymized fields become keyed pseudonyms (one HMAC per distinct
value), everything else that stays is scanned by the detectors of
:mod:`annotation_pipeline.anonymization.text` in one vectorized pass, and the changed values
are written back into copies of the documents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from annotation_pipeline.anonymization.text import (
    TEXT_DETECTORS_VERSION,
    FieldPolicy,
    FieldRule,
    NameFinder,
    pseudonymize,
    scan_texts,
)

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



def log_frame(rows: dict[str, Sequence[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in ("x_min", "y_min", "x_max", "y_max"):
        if col not in frame:
            frame[col] = np.nan
    return frame


@dataclass
class TextOutcome:
    documents: list[dict | None]  # metadata after the policy, by raw row
    captions: list[str | None]
    log: list[pd.DataFrame]
    reid: list[pd.DataFrame]


def _gather_leaves(raw: pd.DataFrame, docs: list[Any], rows: np.ndarray, policy: FieldPolicy
                   ) -> tuple[_Leaves, list[dict | None], list[str | None]]:
    """Copies of the documents without dropped fields, the captions, and every leaf that stays."""
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
    return leaves, documents, captions


def _pseudonymize_whole_values(frame: pd.DataFrame, new_text: pd.Series, item_ids: np.ndarray, secret: bytes,
                               policy_version: str, out: TextOutcome) -> dict[str, str]:
    """Declared names and pseudonymized fields: whole value -> keyed pseudonym. Returns the known names."""
    whole = frame[frame["action"].isin(["pseudonymize", "name"])]
    known_names: dict[str, str] = {}
    for kind, group in whole.groupby("kind", sort=False):
        uniques = group["text"].unique()  # one HMAC per distinct value
        mapping = dict(zip(uniques, pseudonymize(uniques, str(kind), secret)))
        pseudonyms = group["text"].map(mapping)
        new_text.loc[group.index] = pseudonyms
        if kind == "name":
            known_names.update(mapping)
        where = item_ids[group["row"].to_numpy()]
        out.reid.append(pd.DataFrame({"pseudonym": pseudonyms.to_numpy(), "kind": str(kind),
                                      "field": group["path"].to_numpy(),
                                      "original_value": group["text"].to_numpy(), "item_id": where}))
        out.log.append(log_frame({"item_id": where, "kind": str(kind), "field": group["path"].to_numpy(),
                                  "count": 1, "action": "pseudonymize", "detector": "field-policy+hmac-sha256",
                                  "detector_version": policy_version}))
    return known_names


def _scan_remaining(frame: pd.DataFrame, new_text: pd.Series, item_ids: np.ndarray, finder: NameFinder,
                    out: TextOutcome) -> None:
    """Everything else that stays is scanned: redact (with name heuristics) and keep."""
    scanned = frame[frame["action"].isin(["redact", "keep"])]
    if not len(scanned):
        return
    texts, hits = scan_texts(scanned["text"], scanned["action"] == "redact", finder)
    new_text.loc[scanned.index] = texts
    where = frame.loc[hits["row"].to_numpy()]
    out.log.append(log_frame({"item_id": item_ids[where["row"].to_numpy()], "kind": hits["kind"].to_numpy(),
                              "field": where["path"].to_numpy(), "count": hits["count"].to_numpy(),
                              "action": hits["action"].to_numpy(), "detector": hits["detector"].to_numpy(),
                              "detector_version": TEXT_DETECTORS_VERSION}))
    if finder.full_pattern is not None:
        # Declared names met in free text were pseudonymized there too: map them as well.
        found = scanned["text"].str.extractall(f"(?P<name>{finder.full_pattern.pattern})",
                                               flags=finder.full_pattern.flags)
        at = frame.loc[found.index.get_level_values(0)]
        out.reid.append(pd.DataFrame({"pseudonym": found["name"].map(finder.pseudonym_for_text).to_numpy(),
                                      "kind": "name", "field": at["path"].to_numpy(),
                                      "original_value": found["name"].to_numpy(),
                                      "item_id": item_ids[at["row"].to_numpy()]}))


def redact_metadata(raw: pd.DataFrame, docs: list[Any], rows: np.ndarray, policy: FieldPolicy,
                    secret: bytes) -> TextOutcome:
    """Apply the field policy to the metadata of ``rows`` and scan every string that stays.

    ``raw`` needs ``item_id`` and ``caption``; ``docs`` holds each row's parsed metadata.
    """
    leaves, documents, captions = _gather_leaves(raw, docs, rows, policy)
    out = TextOutcome(documents, captions, [], [])
    frame = leaves.frame()
    item_ids = raw["item_id"].astype(str).to_numpy()
    new_text = frame["text"].copy()
    policy_version = f"policy {policy.version}"
    known_names = _pseudonymize_whole_values(frame, new_text, item_ids, secret, policy_version, out)
    _scan_remaining(frame, new_text, item_ids, NameFinder(known_names), out)
    if leaves.drops:
        drops = pd.DataFrame(leaves.drops, columns=["row", "path", "kind"])
        out.log.append(log_frame({"item_id": item_ids[drops["row"].to_numpy()],
                                  "kind": drops["kind"].where(drops["kind"] != "value", "field").to_numpy(),
                                  "field": drops["path"].to_numpy(), "count": 1, "action": "drop",
                                  "detector": "field-policy", "detector_version": policy_version}))
    # Write changed values back into the copied documents (numbers stay numbers if untouched).
    for pos in np.flatnonzero((new_text != frame["text"]).fillna(True).to_numpy()):
        container, key = leaves.slot[pos]
        container[key] = str(new_text.iat[pos])
    return out
