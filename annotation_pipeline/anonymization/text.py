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

Every detector runs in linear time, whatever the text: each pattern is bounded or anchored so
that a run of candidate characters is tried from its start only, and the sub-span search for
grouped numbers is bounded per candidate (a test feeds 1 MB adversarial strings to each).
Formats that are case-insensitive are matched so: e-mail, IBAN (``de89 3704 ...``; checked
against the country's registered length and mod 97), IPv6 hex and UK NINO.

Known limits of the pattern detectors, on purpose: phone numbers are recognised by shape
(so a long order number written like ``030 1234567`` is redacted too, and an ISO date is
not); national-id detection covers hyphenated US SSNs and UK NINOs only; other national
numbers must be declared in the policy (``drop``/``pseudonymize``). Metadata *keys* are not
scanned, only values.
"""

from __future__ import annotations

import functools
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

import pandas as pd

TEXT_DETECTORS_VERSION = "1.1"  # bump when a pattern or validator changes: it goes to the log

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

_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812 check digit, as every payment card number carries (``digits``: ASCII digits)."""
    # Plain Python: called once per card-shaped candidate on at most 19 digits, where numpy's
    # per-call overhead cost 4x more (1 MB of "1234 1234 ..." spent most of its time there).
    total = 0
    for position, ch in enumerate(reversed(digits)):
        total += _LUHN_DOUBLED[ord(ch) - 48] if position % 2 else ord(ch) - 48
    return total % 10 == 0


# IBAN length per country, from the SWIFT IBAN registry (release 101, the one python-stdnum
# ships; a test compares the two). A candidate of the wrong length for its country is not an
# IBAN whatever its check digits say: with lower-case IBANs accepted, this keeps ordinary words
# followed by digits from passing mod 97 by chance (1 in 97).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_valid(compact: str) -> bool:
    """ISO 13616: the country's length, then the first four characters moved to the end, letters
    to 10..35, mod 97 == 1. ``compact`` is upper case without spaces."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_valid(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


def _iban_candidate_valid(candidate: str) -> bool:
    return iban_valid(candidate.replace(" ", "").upper())


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
    # Grouped numbers (cards, IBANs) may be glued to a neighbouring number: try the runs of
    # whole groups whose compact length lies in this range before giving up on a candidate.
    subspan_lengths: tuple[int, int] | None = None

    @property
    def tag(self) -> str:
        return f"[{self.kind.upper()}]"

    def replace_match(self, match: re.Match[str]) -> str:
        return _replacement(self, match.group(0))

    def replacement(self, candidate: str) -> str:
        """The candidate with its validated part replaced by the tag (unchanged if none validates)."""
        if self.validate(candidate):
            return self.tag
        if self.subspan_lengths is not None:
            span = _longest_valid_subspan(candidate, self.validate, *self.subspan_lengths)
            if span is not None:
                start, end = span
                return candidate[:start] + self.tag + candidate[end:]
        return candidate


@functools.lru_cache(maxsize=8192)
def _replacement(detector: PatternDetector, candidate: str) -> str:
    # Scanned metadata repeats itself (the same camera string, order number or template on
    # every item of a partition): each distinct candidate is validated once.
    return detector.replacement(candidate)


_SEPARATORS = re.compile(r"[ -]+")


def _longest_valid_subspan(candidate: str, validate: Callable[[str], bool], shortest: int, longest: int
                           ) -> tuple[int, int] | None:
    """The longest run of whole groups that validates, or None.

    Only runs whose groups (all but the last) have at least 3 characters are tried, as in
    every card and IBAN layout (4-4-4-4, 4-6-5, 4-4-...-2): a run of one-digit groups
    ("1 1 1 1 ...") is no card, and trying all its sub-runs would cost hundreds of checks
    per candidate. The candidate's length is bounded by its pattern, so this is constant work.
    """
    pieces = _SEPARATORS.split(candidate)
    if len(pieces) < 2 or max(map(len, pieces)) < 3:
        return None  # no run of groups can reach ``shortest`` characters
    groups, position = [], 0
    for piece, separator in zip(pieces, [*_SEPARATORS.findall(candidate), ""]):
        groups.append((position, position + len(piece)))
        position += len(piece) + len(separator)
    spans = []
    for i in range(len(groups)):
        length = 0
        for j in range(i, len(groups)):
            length += groups[j][1] - groups[j][0]
            if length > longest:
                break
            if length >= shortest and (i, j) != (0, len(groups) - 1):
                spans.append((groups[i][0], groups[j][1]))
            if groups[j][1] - groups[j][0] < 3:
                break  # a short group can only end a run
    for start, end in sorted(spans, key=lambda se: se[0] - se[1]):
        if validate(candidate[start:end]):
            return start, end
    return None


# Linear time: every pattern either repeats a bounded number of times or is anchored by a
# lookbehind that excludes its own first character class, so a run of n candidate characters
# ("%%%%...", "1 1 1 ...", "a.a.a...") is tried from its first position only, not from each
# of its n positions (which made the e-mail pattern quadratic: 80k '%' took 3.3 s).
# Case: e-mail, IBAN, IPv6 hex and UK NINO are case-insensitive formats; names are not.
PATTERN_DETECTORS: tuple[PatternDetector, ...] = (
    PatternDetector("email", "regex-email", re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?!\w)"),
        lambda s: ".." not in s),
    PatternDetector("iban", "regex-iban+mod97", re.compile(
        r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])"),
        _iban_candidate_valid, subspan_lengths=(15, 34)),
    PatternDetector("card", "regex-card+luhn", re.compile(
        r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card_valid, subspan_lengths=(13, 19 + 6)),
    PatternDetector("national_id", "regex-ssn-nino", re.compile(
        r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"
        r"|(?<!\w)(?i:(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
        r" ?\d{2} ?\d{2} ?\d{2} ?[A-D])(?!\w)"), lambda s: True),
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
