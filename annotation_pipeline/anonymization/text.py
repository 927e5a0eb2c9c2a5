"""Personal data in metadata and free text: detectors, a declared field policy, keyed pseudonyms.

Pure Python (no Dagster). The pieces:

- **Pattern detectors** (compiled regexes plus a validator each): e-mail, IBAN (ISO 13616
  mod-97), payment card (Luhn), national-id style numbers (US SSN, UK NINO), IP addresses
  (parsed by :mod:`ipaddress`, v4 and v6) and phone numbers (7-15 digits, E.164's bound).
  They run over a whole pandas Series at once (``Series.str.replace`` with a validating
  callable) and replace each validated match by a tag such as ``[EMAIL]``.
- **A field policy** (:class:`FieldPolicy`) that says, per dotted metadata path, whether a
  value is dropped, redacted (scanned), pseudonymized, kept (still scanned: defence in depth)
  or is a person's name.
- **Keyed pseudonyms** (:func:`pseudonymize`): HMAC-SHA256 with a secret, so the same value
  gets the same pseudonym in every run that uses the same secret, and nobody without the
  secret can confirm a guess.
- **Names in free text** (:class:`NameFinder`), honest about its limits: it finds (1) the
  names already declared in ``name`` fields of the same partition, anywhere in any scanned
  text, case-insensitively as a whole and as capitalised single tokens; (2) capitalised
  tokens after an honorific ("Dr. Weber") or after a cue word ("recorded by Alice Keller").
  It will miss a stranger's name written without such a cue, lower-case names and names in
  scripts without case, and it over-redacts capitalised place names after a cue word
  ("met Berlin Zoo"). A declared ``name`` field is the dependable route; the text scan is a
  safety net, not a named-entity recognizer.

Known limits of the pattern detectors, on purpose: phone numbers are recognised by shape
(so a long order number written like ``030 1234567`` is redacted too, and an ISO date is
not); national-id detection covers hyphenated US SSNs and UK NINOs only; other national
numbers must be declared in the policy (``drop``/``pseudonymize``). Metadata *keys* are not
scanned, only values.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

TEXT_DETECTORS_VERSION = "1.0"  # bump when a pattern or validator changes: it goes to the log

Action = Literal["drop", "redact", "pseudonymize", "keep", "name"]
ACTIONS: tuple[str, ...] = ("drop", "redact", "pseudonymize", "keep", "name")

# 12 hex digits = 48 bits: a 50 % chance of one collision needs ~20 million distinct values
# (8 hex digits would reach it at ~77 thousand, too close to a large program's operator list).
PSEUDONYM_HEX_DIGITS = 12
PSEUDONYM_PREFIX = {"name": "person", "email": "email", "phone": "phone", "iban": "iban",
                    "card": "card", "ip": "ip", "national_id": "id", "address": "address"}


class PolicyError(ValueError):
    """A field policy file or mapping is malformed; the message names the field and the fix."""


# --------------------------------------------------------------------------------------------
# Keyed pseudonyms
# --------------------------------------------------------------------------------------------

def normalize_for_pseudonym(value: str, kind: str) -> str:
    """Spelling variants of one value must map to one pseudonym (case, spaces, separators)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if kind in ("phone", "card", "iban", "national_id"):
        return re.sub(r"[^0-9A-Za-z+]", "", text).upper()
    return " ".join(text.casefold().split())


def pseudonymize(values: Iterable[str], kind: str, secret: bytes) -> list[str]:
    """``<prefix>_<12 hex>`` per value: HMAC-SHA256(secret, kind + normalized value).

    The kind is part of the message so that the same string as an e-mail and as a name
    gives unrelated pseudonyms (no cross-field linkage by equality).
    """
    prefix = PSEUDONYM_PREFIX.get(kind, kind)
    out = []
    for value in values:  # one HMAC per *distinct* value; callers pass uniques
        message = f"{kind}\x1f{normalize_for_pseudonym(value, kind)}".encode("utf-8")
        digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
        out.append(f"{prefix}_{digest[:PSEUDONYM_HEX_DIGITS]}")
    return out


# --------------------------------------------------------------------------------------------
# Pattern detectors
# --------------------------------------------------------------------------------------------

def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812 check digit, as every payment card number carries."""
    nums = np.frombuffer(digits.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    doubled = nums[::-1].copy()
    doubled[1::2] *= 2
    doubled[1::2] -= 9 * (doubled[1::2] > 9)
    return int(doubled.sum()) % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    if not (15 <= len(compact) <= 34) or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _iban_candidate_valid(candidate: str) -> bool:
    return iban_valid(re.sub(r"\s", "", candidate).upper())


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return any(ch.isalnum() for ch in candidate)  # "::" alone is an address, not personal data


_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d+\.\d+")


def _phone_valid(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    # 7..15 digits: the shortest local numbers to E.164's maximum. Dates and decimals
    # (timestamps, GPS written as text) have the same digits but not a phone's shape.
    return 7 <= digits <= 15 and _DATE_LIKE.fullmatch(candidate.strip("()+ ")) is None


@dataclass(frozen=True)
class PatternDetector:
    kind: str
    name: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]
    # Grouped numbers (cards, IBANs) may be glued to a neighbouring number: try the sub-spans
    # that start and end at group separators before giving up on a candidate.
    search_subspans: bool = False

    @property
    def tag(self) -> str:
        return f"[{self.kind.upper()}]"

    def replace_match(self, match: re.Match[str]) -> str:
        candidate = match.group(0)
        if self.validate(candidate):
            return self.tag
        if self.search_subspans:
            span = _longest_valid_subspan(candidate, self.validate)
            if span is not None:
                start, end = span
                return candidate[:start] + self.tag + candidate[end:]
        return candidate


def _longest_valid_subspan(candidate: str, validate: Callable[[str], bool]) -> tuple[int, int] | None:
    starts = [0] + [m.end() for m in re.finditer(r"[ -]+", candidate)]
    ends = [m.start() for m in re.finditer(r"[ -]+", candidate)] + [len(candidate)]
    spans = sorted(((s, e) for s in starts for e in ends if e > s), key=lambda se: se[0] - se[1])
    for start, end in spans:
        if validate(candidate[start:end]):
            return start, end
    return None


# Order matters: e-mails contain digits and dots, IBANs and cards contain phone-shaped digit
# runs, SSNs look like phone numbers, IPv4 addresses look like dotted phone numbers. Each
# detector's tag holds no digits, so later detectors never re-match a replaced value.
PATTERN_DETECTORS: tuple[PatternDetector, ...] = (
    PatternDetector("email", "regex-email", re.compile(
        r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?!\w)"),
        lambda s: ".." not in s),
    PatternDetector("iban", "regex-iban+mod97", re.compile(
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])"),
        _iban_candidate_valid, search_subspans=True),
    PatternDetector("card", "regex-card+luhn", re.compile(
        r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_valid, search_subspans=True),
    PatternDetector("national_id", "regex-ssn-nino", re.compile(
        r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
        r"|(?<!\w)(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"), lambda s: True),
    PatternDetector("ip", "regex-ip+ipaddress", re.compile(
        r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)"
        r"|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])"),
        _ip_valid),
    PatternDetector("phone", "regex-phone", re.compile(
        r"(?<![\w+(])(?:\+|00|\()?\d(?:[ ()./-]{0,2}\d){6,14}(?![\w])"), _phone_valid),
)


# --------------------------------------------------------------------------------------------
# Names in free text
# --------------------------------------------------------------------------------------------

_CAP = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’-]+"
# Python's lookbehind must be fixed-width: the cue is captured and written back instead.
_HONORIFIC = re.compile(
    rf"\b((?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Herr|Frau|Madame|Monsieur)\.? )(?:{_CAP} ){{0,2}}{_CAP}")
_CUE = re.compile(
    rf"\b((?i:by|named|called|met|contact|photographer|driver|operator|ask|asked) ){_CAP}(?: {_CAP}){{0,2}}")
NAME_TAG = "[NAME]"


@dataclass
class NameFinder:
    """Finds person names in text: the partition's declared names, then cue-based heuristics.

    ``known_names`` maps each declared full name to its pseudonym; a full known name found in
    text is replaced by that same pseudonym (so a vendor sees one consistent person), a lone
    capitalised token of a known name ("Keller") by ``[NAME]``.
    """

    known_names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = sorted({n.strip() for n in self.known_names if n and n.strip()}, key=len, reverse=True)
        self._by_normal = {" ".join(n.casefold().split()): p for n, p in self.known_names.items()}
        self.full_pattern = (re.compile(
            r"(?<!\w)(?:" + "|".join(r"\s+".join(map(re.escape, n.split())) for n in names) + r")(?!\w)",
            re.IGNORECASE) if names else None)
        tokens = sorted({t for n in names for t in n.split() if len(t) >= 2 and t[0].isupper()},
                        key=len, reverse=True)
        self.token_pattern = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, tokens)) + r")(?!\w)")
                              if tokens else None)

    def pseudonym_for_text(self, name: str) -> str:
        """The pseudonym of a known name however it is spaced or cased; ``[NAME]`` if unknown."""
        return self._by_normal.get(" ".join(name.casefold().split()), NAME_TAG)

    def _pseudonym_for(self, match: re.Match[str]) -> str:
        return self.pseudonym_for_text(match.group(0))

    def replace(self, texts: pd.Series, heuristics: pd.Series) -> tuple[pd.Series, pd.DataFrame]:
        """Replace names; returns the texts and hit counts per row (columns: detector, count).

        ``heuristics`` (bool per row) switches the cue-word/honorific heuristics on: they run
        on free-text fields, not on structured ``keep`` fields such as a camera model.
        """
        hits = []
        if self.full_pattern is not None:
            count = texts.str.count(self.full_pattern)
            texts = texts.str.replace(self.full_pattern, self._pseudonym_for, regex=True)
            hits.append(("known-names", "pseudonymize", count))
        if self.token_pattern is not None:
            before = texts.str.count(re.escape(NAME_TAG))
            texts = texts.str.replace(self.token_pattern, NAME_TAG, regex=True)
            hits.append(("known-name-tokens", "redact", texts.str.count(re.escape(NAME_TAG)) - before))
        free = texts[heuristics]
        before = free.str.count(re.escape(NAME_TAG))
        for pattern in (_HONORIFIC, _CUE):
            free = free.str.replace(pattern, r"\1" + NAME_TAG, regex=True)
        heuristic_hits = pd.Series(0, index=texts.index, dtype="int64")
        heuristic_hits.loc[free.index] = free.str.count(re.escape(NAME_TAG)) - before
        texts = texts.copy()
        texts.loc[free.index] = free
        hits.append(("name-heuristic", "redact", heuristic_hits))
        frame = pd.concat(
            [pd.DataFrame({"row": c.index, "detector": d, "action": a, "count": c.to_numpy()})
             for d, a, c in hits], ignore_index=True)
        return texts, frame[frame["count"] > 0]


def scan_texts(texts: pd.Series, heuristics: pd.Series, names: NameFinder) -> tuple[pd.Series, pd.DataFrame]:
    """Run every pattern detector, then the name finder, over a Series of texts.

    Returns the redacted texts (same index) and one row per (row label, kind, detector) with
    the number of replacements: columns ``row, kind, detector, action, count``.
    """
    texts = texts.astype("string").fillna("")
    frames = []
    for det in PATTERN_DETECTORS:
        tag = re.escape(det.tag)
        before = texts.str.count(tag)
        texts = texts.str.replace(det.pattern, det.replace_match, regex=True)
        count = texts.str.count(tag) - before
        count = count[count > 0]
        frames.append(pd.DataFrame({"row": count.index, "kind": det.kind, "detector": det.name,
                                    "action": "redact", "count": count.to_numpy()}))
    texts, name_hits = names.replace(texts, heuristics.reindex(texts.index, fill_value=False))
    frames.append(name_hits.assign(kind="name"))
    hits = pd.concat(frames, ignore_index=True)[["row", "kind", "detector", "action", "count"]]
    return texts, hits.astype({"count": "int64"})


# --------------------------------------------------------------------------------------------
# Field policy
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldRule:
    """What happens to one metadata field (a dotted path; it covers the whole subtree)."""

    action: Action
    kind: str = "value"  # what the field holds: pseudonym prefix and redaction-log kind

    def to_json(self) -> dict[str, str] | str:
        return self.action if self.kind == "value" else {"action": self.action, "kind": self.kind}


@dataclass(frozen=True)
class FieldPolicy:
    """A declared policy per metadata field; paths not declared get ``default`` (redact = scan).

    ``fields`` maps dotted paths (``"operator.email"``) to rules; the most specific declared
    prefix of a path wins, so ``"customer": drop`` removes the whole ``customer`` object.
    List elements share their list's path. The caption is governed by the path ``caption``
    (``redact`` unless declared).

    - ``drop``: the field is removed from the metadata.
    - ``redact``: pattern detectors and the name finder (with heuristics) replace matches by
      tags (``[EMAIL]``, ``[NAME]``, ...).
    - ``pseudonymize``: the whole value becomes a keyed pseudonym (``email_3f9a1c2b4d5e``).
    - ``keep``: the value stays, but is still scanned by the pattern detectors and for the
      partition's known names (a camera model is kept; an e-mail typed into it is not).
    - ``name``: a person's name; pseudonymized (``person_...``) and added to the names the
      free-text scan looks for in the same partition.
    """

    fields: dict[str, FieldRule] = field(default_factory=dict)
    default: Action = "redact"
    version: str = "1"

    def __post_init__(self) -> None:
        problems = [f"field {p!r}: action {r.action!r} is not one of {', '.join(ACTIONS)}"
                    for p, r in self.fields.items() if r.action not in ACTIONS]
        if self.default not in ACTIONS or self.default == "name":
            problems.append(f"default action {self.default!r} must be one of drop, redact, pseudonymize, keep")
        if problems:
            raise PolicyError("; ".join(problems))

    def rule_for(self, path: str) -> FieldRule:
        parts = path.split(".")
        for n in range(len(parts), 0, -1):
            rule = self.fields.get(".".join(parts[:n]))
            if rule is not None:
                return rule
        return FieldRule(self.default)

    # ---- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "default": self.default,
                "fields": {p: r.to_json() for p, r in sorted(self.fields.items())}}

    def to_json(self, path: Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Any, source: str = "policy") -> FieldPolicy:
        if not isinstance(data, dict) or not isinstance(data.get("fields", {}), dict):
            raise PolicyError(f"{source}: expected an object with a 'fields' object, "
                              'e.g. {"default": "redact", "fields": {"operator.name": "name"}}')
        fields: dict[str, FieldRule] = {}
        problems = []
        for path, spec in data.get("fields", {}).items():
            if isinstance(spec, str):
                fields[path] = FieldRule(spec)  # type: ignore[arg-type]
            elif isinstance(spec, dict) and isinstance(spec.get("action"), str):
                fields[path] = FieldRule(spec["action"], str(spec.get("kind", "value")))
            else:
                problems.append(f"{source}: field {path!r} must be an action string or "
                                f'{{"action": ..., "kind": ...}}, got {spec!r}')
        if problems:
            raise PolicyError("; ".join(problems))
        try:
            return cls(fields, data.get("default", "redact"), str(data.get("version", "1")))
        except PolicyError as exc:
            raise PolicyError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: Path | str) -> FieldPolicy:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(f"{path}: policy file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PolicyError(f"{path}: not a valid UTF-8 JSON file ({exc})") from None
        return cls.from_dict(data, source=str(path))


def default_policy() -> FieldPolicy:
    """The policy for the sample sidecar metadata (saved as data/anonymization_policy.json).

    Why each choice: vendors label pixels, they need no contact data at all, so direct
    identifiers with no labeling value are dropped; the operator stays linkable across items
    through pseudonyms (useful for per-operator QA) without being identifiable; free text is
    scanned; camera and timestamp are kept (still scanned) because they explain image
    conditions.
    """
    return FieldPolicy(
        fields={
            "capture": FieldRule("keep"),
            "operator.name": FieldRule("name", "name"),
            "operator.email": FieldRule("pseudonymize", "email"),
            "operator.phone": FieldRule("drop", "phone"),
            "location.address": FieldRule("drop", "address"),
            "location.gps": FieldRule("drop", "gps"),
            "device_ip": FieldRule("pseudonymize", "ip"),
            "customer.iban": FieldRule("drop", "iban"),
            "customer.card": FieldRule("drop", "card"),
            "customer.national_id": FieldRule("drop", "national_id"),
            "notes": FieldRule("redact"),
            "caption": FieldRule("redact"),
        },
        default="redact",
        version="1",
    )
