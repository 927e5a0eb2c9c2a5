"""Sidecar metadata (``<image>.json``) parsed with bounds, so no sidecar can stop a day.

Python's ``json`` module recurses once per nesting level (10,000 ``[`` raise RecursionError),
turns a 5,000-digit number into an int (ValueError past 4,300 digits, and quadratic time
below that), accepts ``NaN`` and lone UTF-16 surrogates (``"\\ud800"``) that no UTF-8 file
or Arrow string can hold, and has no size limit. :func:`parse_sidecar` checks each of these
before or right after parsing and returns a reason instead of raising.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SIDECAR_BYTES = 1 * 2**20    # sidecars are a few hundred bytes; a megabyte is not metadata
MAX_DEPTH = 32                   # the sample sidecars nest 3 deep
MAX_NUMBER_CHARS = 64            # a float64 needs 24; longer numbers carry no measurement
MAX_STRING_CHARS = 100_000       # a caption is a paragraph, not a book
MAX_VALUES = 100_000             # scalar values in one sidecar

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Sidecar:
    metadata_json: str      # canonical JSON (sorted keys)
    caption: str | None     # the ``notes`` field, when it is a string


class SidecarProblem(ValueError):
    """Why a sidecar cannot be used: ``reason`` (a code) and a sentence for a person."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting outside string literals, in linear time (numpy, no recursion).

    A quote ends or starts a string unless an odd run of backslashes precedes it; UTF-8
    continuation bytes are >= 0x80, so byte codes never mistake a letter for a bracket.
    """
    codes = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if not len(codes):
        return 0
    positions = np.arange(len(codes))
    last_plain = np.maximum.accumulate(np.where(codes != ord("\\"), positions, -1))
    backslashes_before = np.concatenate(([0], positions[:-1] - last_plain[:-1]))
    quotes = (codes == ord('"')) & (backslashes_before % 2 == 0)
    in_string = np.cumsum(quotes) % 2 == 1
    steps = (np.isin(codes, (ord("["), ord("{"))).astype(np.int32)
             - np.isin(codes, (ord("]"), ord("}"))))
    steps[in_string | quotes] = 0
    return int(np.cumsum(steps).max())


def _bounded_number(convert):
    def parse(literal: str):
        if len(literal) > MAX_NUMBER_CHARS:
            raise SidecarProblem("invalid_metadata", f"a number has {len(literal)} characters, more than "
                                                     f"{MAX_NUMBER_CHARS}; write it as a string if it is an id")
        return convert(literal)
    return parse


def _reject_constant(literal: str):
    raise SidecarProblem("invalid_metadata", f"{literal} is not a JSON number; use null for a missing value")


def _check_values(document: Any) -> None:
    """Strings (keys too) must be storable as UTF-8 and of bounded size; depth is bounded already."""
    stack, seen = [document], 0
    while stack:  # iterative: the depth bound keeps the stack small, no recursion at all
        value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise SidecarProblem("invalid_metadata", f"more than {MAX_VALUES} values in one sidecar")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                raise SidecarProblem("invalid_metadata", f"a string of {len(value)} characters exceeds "
                                                         f"{MAX_STRING_CHARS}; shorten the field")
            if _SURROGATE.search(value):
                raise SidecarProblem("invalid_metadata", "a string holds a lone UTF-16 surrogate (such as "
                                                         "\\ud800), which is not text; fix the exporter")


def parse_sidecar(content: bytes) -> Sidecar:
    """Parse one sidecar's bytes; raises :class:`SidecarProblem` (never anything else) when unusable."""
    if len(content) > MAX_SIDECAR_BYTES:
        raise SidecarProblem("invalid_metadata", f"{len(content)} bytes exceeds the {MAX_SIDECAR_BYTES} byte "
                                                 "sidecar limit")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SidecarProblem("undecodable_metadata", f"the sidecar is not UTF-8 ({exc.reason} at byte "
                                                     f"{exc.start}); re-export it as UTF-8") from None
    depth = _nesting_depth(text)
    if depth > MAX_DEPTH:
        raise SidecarProblem("invalid_metadata", f"the sidecar nests {depth} levels deep, more than {MAX_DEPTH}")
    try:
        document = json.loads(text, parse_int=_bounded_number(int), parse_float=_bounded_number(float),
                              parse_constant=_reject_constant)
    except SidecarProblem:
        raise
    except json.JSONDecodeError as exc:
        raise SidecarProblem("invalid_metadata", f"the sidecar is not valid JSON ({exc.msg}, line "
                                                 f"{exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: the bounds above should catch these
        raise SidecarProblem("invalid_metadata", f"the sidecar cannot be parsed ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise SidecarProblem("invalid_metadata", f"the sidecar holds a JSON {type(document).__name__}, "
                                                 "expected an object")
    _check_values(document)
    notes = document.get("notes")
    return Sidecar(json.dumps(document, sort_keys=True, ensure_ascii=False),
                   notes if isinstance(notes, str) else None)
