"""Detectors, pseudonyms, names and the field policy (annotation_pipeline.anonymization.text)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn

from annotation_pipeline.anonymization.text import (
    IBAN_LENGTHS,
    PATTERN_DETECTORS,
    FieldPolicy,
    FieldRule,
    NameFinder,
    PolicyError,
    default_policy,
    iban_valid,
    luhn_valid,
    pseudonymize,
    scan_texts,
)

SECRET = b"s" * 32


def scan(*texts: str, heuristics: bool = True, names: dict[str, str] | None = None) -> tuple[list[str], pd.DataFrame]:
    series = pd.Series(list(texts), dtype="string")
    out, hits = scan_texts(series, pd.Series(heuristics, index=series.index), NameFinder(names or {}))
    return out.tolist(), hits


@pytest.mark.parametrize("text, value, tag", [
    ("write to jane.doe+spam@mail.example.co.uk today", "jane.doe+spam@mail.example.co.uk", "[EMAIL]"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ("iban GB82WEST12345698765432.", "GB82WEST12345698765432", "[IBAN]"),
    ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "[CARD]"),
    ("amex 3782-822463-10005", "3782-822463-10005", "[CARD]"),
    ("SSN 123-45-6789 on file", "123-45-6789", "[NATIONAL_ID]"),
    ("NINO AB 12 34 56 C", "AB 12 34 56 C", "[NATIONAL_ID]"),
    ("from 192.168.10.200.", "192.168.10.200", "[IP]"),
    ("v6 2001:db8:85a3::8a2e:370:7334 seen", "2001:db8:85a3::8a2e:370:7334", "[IP]"),
    ("call +49 30 1234567 now", "+49 30 1234567", "[PHONE]"),
    ("call (030) 123-4567", "(030) 123-4567", "[PHONE]"),
])
def test_each_detector_replaces_its_personal_data_by_its_tag(text: str, value: str, tag: str) -> None:
    [out], hits = scan(text)
    assert out == text.replace(value, tag)
    assert hits["kind"].tolist() == [tag.strip("[]").lower()]


@pytest.mark.parametrize("text", [
    "captured 2026-11-22T10:15:00Z",          # a timestamp is not a phone number
    "gps 52.520008, 13.404954",               # decimals are not phone numbers
    "dashcam-3 firmware 1.2.3",               # a version is not an IP (only 3 parts)
    "card 4111 1111 1111 1112",               # fails Luhn: not a card ...
    "ip 999.1.2.3 is not an address",         # octet out of range
    "at 12:30:00 sharp",                      # a time is not IPv6
])
def test_look_alikes_are_not_reported_as_their_look_alike_kind(text: str) -> None:
    [out], hits = scan(text)
    if "4111" in text:  # ... though its digit runs may still be redacted as a phone (defence in depth)
        assert "[CARD]" not in out
    else:
        assert out == text and hits.empty


def test_card_and_iban_validation_agree_with_python_stdnum() -> None:
    rng = np.random.default_rng(3)
    numbers = ["".join(map(str, rng.integers(0, 10, int(n)))) for n in rng.integers(13, 20, 300)]
    assert [luhn_valid(n) for n in numbers] == [stdnum_luhn.is_valid(n) for n in numbers]
    ibans = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
             "NL91ABNA0417164300", "DE89370400440532013001", "GB82WEST12345698765433"]
    assert [iban_valid(i) for i in ibans] == [stdnum_iban.is_valid(i) for i in ibans]


def test_iban_lengths_agree_with_the_registry_python_stdnum_ships() -> None:
    from importlib.resources import files

    registry = (files("stdnum") / "iban.dat").read_text(encoding="utf-8")
    shipped = {m.group(1): 4 + sum(int(n) for n in re.findall(r"(\d+)!", m.group(2)))
               for m in re.finditer(r'^([A-Z]{2}) .*?bban="([^"]+)"', registry, re.MULTILINE)}
    assert IBAN_LENGTHS == shipped


@pytest.mark.parametrize("text", [
    "iban de89 3704 0044 0532 0130 00 please",
    "iban de89370400440532013000.",
    "IBAN: gb82 west 1234 5698 7654 32",
    "account Fr14 2004 1010 0505 0001 3m02 606",
])
def test_a_lower_or_mixed_case_iban_is_found(text: str) -> None:
    [out], hits = scan(text)
    value = re.search(r"[A-Za-z]{2}\d{2}[ A-Za-z0-9]+\d", text).group(0)
    assert stdnum_iban.is_valid(value)  # the oracle agrees it is an IBAN
    assert out == text.replace(value, "[IBAN]")
    assert hits["kind"].tolist() == ["iban"]


def test_a_lower_case_uk_national_insurance_number_is_found() -> None:
    [out], _ = scan("nino ab 12 34 56 c on file")
    assert out == "nino [NATIONAL_ID] on file"


def test_words_followed_by_digits_are_not_ibans() -> None:
    texts = [f"{a}{b}{n:02d} hello world this is fine" for a, b, n in zip("abcdefgh", "stuvwxyz", range(8))]
    out, hits = scan(*texts)
    assert out == texts and hits.empty


# Runs of one candidate character are where a backtracking pattern goes quadratic: 80k '%'
# took the old e-mail pattern 3.3 s, so 128 KB took it about 9 s and 1 MB about 9 minutes.
def adversarial(size: int) -> dict[str, str]:
    return {
        "percent": "%" * size, "at_signs": "@" * size, "percent_then_at": "%" * size + "@x",
        "letters": "a" * size, "capitals": "A" * size, "digits": "7" * size,
        "digits_spaced": "1 " * (size // 2), "digits_dashed": "1-" * (size // 2),
        "digits_dotted": "1." * (size // 2), "digit_groups": "1234 " * (size // 5), "dots": "." * size,
        "dot_chain": "a." * (size // 2), "at_chain": "a@" * (size // 2), "domain_chain": "x@" + "ab." * (size // 3),
        "colons": ":" * size, "hex_colons": "a:" * (size // 2), "capitalised_words": "Aaaa " * (size // 5),
        "cue_and_capitals": "by Aaaa Bbbb " * (size // 13), "honorifics": "Dr. " * (size // 4),
        "iban_shaped": ("de12 " + "1 " * 30) * (size // 65), "spaces": " " * size, "plus_signs": "+" * size,
        "open_parens": "(1" * (size // 2),
    }


DETECTORS = [*PATTERN_DETECTORS, "names"]
DETECTOR_IDS = [*(d.kind for d in PATTERN_DETECTORS), "names"]


def assert_linear(detector, size: int, limit_s: float) -> None:
    """Not a timing test: a quadratic detector takes minutes here, a linear one about a second per MB."""
    finder = NameFinder({"Aaaa Bbbb": "person_0123456789ab"})
    for name, text in adversarial(size).items():
        series = pd.Series([text], dtype="string")
        started = time.perf_counter()
        if detector == "names":
            out, _ = finder.replace(series, pd.Series([True]))
        else:
            out = series.str.replace(detector.pattern, detector.replace_match, regex=True)
        elapsed = time.perf_counter() - started
        assert elapsed < limit_s, f"{getattr(detector, 'kind', detector)} took {elapsed:.1f} s on {size} chars of {name}"
        assert len(out.iloc[0]) > 0


@pytest.mark.parametrize("detector", DETECTORS, ids=DETECTOR_IDS)
def test_every_detector_runs_in_linear_time_on_adversarial_text(detector) -> None:
    assert_linear(detector, 128 * 2**10, limit_s=5)


@pytest.mark.slow
@pytest.mark.parametrize("detector", DETECTORS, ids=DETECTOR_IDS)
def test_every_detector_finishes_adversarial_megabytes_in_seconds(detector) -> None:
    assert_linear(detector, 2**20, limit_s=5)


def test_a_card_number_glued_to_an_order_number_is_still_found() -> None:
    [out], _ = scan("order 12 4111-1111-1111-1111")
    assert out == "order 12 [CARD]"


def test_all_kinds_in_one_text_are_counted_per_kind() -> None:
    [out], hits = scan("Jane: jane@x.org, +44 20 7946 0958, 10.0.0.1, jane@y.org")
    counts = dict(zip(hits["kind"], hits["count"]))
    assert counts == {"email": 2, "phone": 1, "ip": 1}
    assert out == "Jane: [EMAIL], [PHONE], [IP], [EMAIL]"


def test_known_names_are_pseudonymized_in_free_text_and_their_tokens_redacted() -> None:
    names = {"Alice Keller": "person_aaaaaaaaaaaa"}
    [a, b, c], hits = scan("Recorded by alice  KELLER today", "Keller waved", "keller is lower case",
                           names=names)
    assert a == "Recorded by person_aaaaaaaaaaaa today"
    assert b == "[NAME] waved"
    assert c == "keller is lower case"  # a documented limit: lower-case lone tokens are not names
    assert set(hits["detector"]) == {"known-names", "known-name-tokens"}


def test_name_heuristics_catch_honorifics_and_cues_only_where_switched_on() -> None:
    texts = ["Dr. Hans Weber signed", "photo taken by Maria Garcia", "Canon EOS by Maria Garcia"]
    series = pd.Series(texts, dtype="string")
    out, _ = scan_texts(series, pd.Series([True, True, False]), NameFinder({}))
    assert out.tolist() == ["Dr. [NAME] signed", "photo taken by [NAME]", "Canon EOS by Maria Garcia"]


def test_pseudonyms_are_stable_keyed_and_normalized() -> None:
    first = pseudonymize(["Jane Doe", "jane   doe", "John Roe"], "name", SECRET)
    again = pseudonymize(["Jane Doe"], "name", SECRET)
    other_secret = pseudonymize(["Jane Doe"], "name", b"t" * 32)
    as_email = pseudonymize(["Jane Doe"], "email", SECRET)
    assert first[0] == first[1] == again[0]
    assert first[0] != first[2]
    assert other_secret[0] != first[0]
    assert as_email[0].split("_")[1] != first[0].split("_")[1]  # no linkage across kinds
    assert first[0].startswith("person_") and len(first[0]) == len("person_") + 12


def test_policy_rules_apply_to_the_most_specific_declared_prefix() -> None:
    policy = FieldPolicy({"customer": FieldRule("drop"), "customer.segment": FieldRule("keep")})
    assert policy.rule_for("customer.iban").action == "drop"
    assert policy.rule_for("customer.segment").action == "keep"
    assert policy.rule_for("weather").action == "redact"  # undeclared fields are scanned


def test_default_policy_survives_a_json_round_trip(tmp_path) -> None:
    path = tmp_path / "anonymization_policy.json"
    default_policy().to_json(path)
    assert FieldPolicy.from_json(path) == default_policy()
    assert json.loads(path.read_text())["fields"]["operator.name"] == {"action": "name", "kind": "name"}


@pytest.mark.parametrize("content, expected", [
    ('{"fields": {"operator.name": "shred"}}', "field 'operator.name': action 'shred' is not one of"),
    ('{"fields": {"a": 3}}', "field 'a' must be an action string"),
    ('{"default": "name"}', "default action 'name'"),
    ("[1, 2]", "expected an object with a 'fields' object"),
    ("{not json", "not a valid UTF-8 JSON file"),
])
def test_a_malformed_policy_file_is_rejected_with_the_field_and_the_fix(tmp_path, content, expected) -> None:
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(PolicyError, match="policy.json") as err:
        FieldPolicy.from_json(path)
    assert expected in str(err.value)
