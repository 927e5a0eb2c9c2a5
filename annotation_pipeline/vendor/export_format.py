"""What both vendor export formats share: bounded JSON decoding and the parsed-record shape.

A vendor file is untrusted input. Decoding bounds what one file can do to the day's run:
- size: files over ``MAX_FILE_BYTES`` are refused before they are read;
- encoding: UTF-8 only (UTF-16/32 with or without a byte-order mark are named as such);
- depth: the JSON scanner's own recursion guard (an export nests 6 levels; 10k is an attack);
- number size: integers longer than ``MAX_INT_DIGITS`` become floats instead of reaching
  Python's int-conversion limit (a 5,000-digit literal raises ValueError there);
- strings: ids and labels longer than ``MAX_TEXT`` characters, or holding a lone surrogate
  (``"\\ud800"``, which Parquet cannot store), are row problems, never exceptions.

Both parsers turn a document into rows of ``PARSED_COLUMNS``; every scalar a row carries has
already been checked to be a float, a short string or None, so the vectorized step after
them (``vendor.intake``) never meets a list where it expects a number.
"""

from __future__ import annotations

import codecs
import gc
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# A return file larger than this is refused unread: real exports of a day's batch are a few
# MB, and the whole file is held in memory while parsed.
MAX_FILE_BYTES = 256 * 1024 * 1024
# int64 holds 18 full digits; longer integer literals are kept as floats (inf when huge).
MAX_INT_DIGITS = 18
# Ids, labels and e-mails longer than this are not ids, labels or e-mails.
MAX_TEXT = 256

KIND_BY_LABEL_STUDIO_TYPE = {"choices": "choice", "rectanglelabels": "box", "polygonlabels": "polygon"}

# COCO has no annotator field: without our annotator_id attribute, the file is one annotator.
WHOLE_FILE = "<whole file>"

# Columns of the intermediate "parsed rows" frame both format parsers produce.
PARSED_COLUMNS = ["record_ref", "task_id", "ann_ref", "result_ref", "annotator_id", "lead_time_s",
                  "kind", "label", "x", "y", "w", "h", "points", "percent", "ref_width", "ref_height",
                  "rotation", "image_name", "problem", "problem_detail"]


class FileRejected(Exception):
    """The whole file is unusable; carries a reason code and a sentence for the vendor manager."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def record(record_ref: str, task_id: Any = None, ann_ref: Any = "", result_ref: Any = "",
           annotator_id: Any = None, lead_time_s: Any = None, kind: Any = None, label: Any = None,
           x: Any = None, y: Any = None, w: Any = None, h: Any = None, points: Any = None,
           percent: bool = False, ref_width: Any = None, ref_height: Any = None, rotation: float = 0.0,
           image_name: Any = None, problem: str = "", problem_detail: str = "") -> tuple:
    return (record_ref, task_id, ann_ref, result_ref, annotator_id, lead_time_s, kind, label,
            x, y, w, h, points, percent, ref_width, ref_height, rotation, image_name, problem,
            problem_detail)


# ---------------------------------------------------------------- decoding

_BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")]


def _bounded_int(literal: str) -> int | float:
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        return float(literal)  # float() has no digit limit: 1e5000 digits is inf, a row problem later
    return int(literal)


# Only an integer literal of more than MAX_INT_DIGITS digits needs _bounded_int: without one
# in the file, the decoder's own int() gives the same values, without a Python call per number.
# Every digit mapped to "0" and every other byte to "x": a run of 19 "0" is such a literal
# (or digits in a string or a fraction, read the slow way for nothing); two C passes, no regex.
_DIGITS_AS_ZERO = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord("x") for b in range(256))
_LONG_DIGIT_RUN = b"0" * (MAX_INT_DIGITS + 1)


def _has_long_digit_run(raw: bytes) -> bool:
    return _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a document is decoded and typed.

    Decoding a day's export creates millions of dicts and lists; each batch of allocations
    would start a collection walking all of them again (more than half the decoding time
    here). A decoded JSON document holds no reference cycles, so nothing is left uncollected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_json(raw: bytes) -> Any:
    """Bytes of a return file -> JSON document, or FileRejected saying what is wrong with it."""
    for bom, name in _BOMS:  # UTF-32-LE starts with the UTF-16-LE mark: longest first
        if raw.startswith(bom):
            raise FileRejected("not_utf8", f"the file is {name} (byte-order mark found); "
                                           "export it again as UTF-8 JSON")
    if b"\x00" in raw[:4096]:
        raise FileRejected("not_utf8", "the file holds NUL bytes, as UTF-16 or UTF-32 text without a "
                                       "byte-order mark does; export it again as UTF-8 JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected("not_utf8",
                           f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8; "
                           "export the file again as UTF-8 JSON") from None
    if not text.strip():
        raise FileRejected("empty_file", "the file is empty; expected a JSON export")
    try:
        with gc_paused():
            return json.loads(text, parse_int=_bounded_int if _has_long_digit_run(raw) else None)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise FileRejected("truncated_json",
                               f"the JSON ends early at line {exc.lineno} column {exc.colno} "
                               f"({exc.msg}); the upload was probably cut off, ask for it again"
                               ) from None
        raise FileRejected("invalid_json", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                           f"column {exc.colno}") from None
    except RecursionError:
        raise FileRejected("too_deep", "the JSON nests too deeply to be an export (a Label Studio "
                                       "or COCO export nests about 6 levels)") from None
    except (ValueError, OverflowError) as exc:  # a number literal the float parser refuses
        raise FileRejected("invalid_json", f"a value cannot be read as JSON: {preview(str(exc))}") from None


# ---------------------------------------------------------------- values

def preview(value: Any, limit: int = 60) -> str:
    """A short, printable, storable description of any decoded JSON value.

    Never ``repr`` a whole value: a 200 MB string or a 900-deep list would be copied (or
    recursed into) in full only to be cut to a few characters.
    """
    if isinstance(value, str):
        shown = repr(value[:limit]) + ("…" if len(value) > limit else "")
        return safe_text(shown)
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} entries"
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)[:limit]
    return type(value).__name__


def safe_text(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX``: always encodable as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def text_problem(value: str) -> str:
    """Why a string cannot be an id or a label ('' when it can)."""
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long (at most {MAX_TEXT})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"holds a lone surrogate ({preview(value)}), which is not text"
    return ""


_DECIMAL = re.compile(r"[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True, int("²") fails


def task_id_text(value: Any) -> str | None:
    """Task ids are integers (sent as int; a string of ASCII digits is tolerated)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value < 10 ** MAX_INT_DIGITS:
        return str(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return str(int(value.strip()))
    return None


def reference(value: Any, fallback: int) -> str:
    """An annotation or result id as a short storable string; its position when unusable."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        text = str(value) if isinstance(value, int) else value
        if not text_problem(text):
            return text
    return str(fallback)


def number(value: Any) -> float | None:
    """A JSON number (or numeric string) as float; None when absent; NaN when not a number.

    NaN travels on: the QA suite names a missing coordinate as such, with its row.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def size_problem(value: Any, name: str) -> str:
    """Why a width/height value given by the vendor is unusable ('' when fine or absent)."""
    if value is None:
        return ""
    parsed = number(value)
    if parsed is None or not math.isfinite(parsed) or parsed <= 0:
        return f"{name} must be a positive number of pixels, got {preview(value)}"
    return ""


def image_name(data: Any) -> str | None:
    """The image a task shows (Label Studio ``data.image``), when it is a usable string."""
    value = data.get("image") if isinstance(data, dict) else None
    if isinstance(value, str) and len(value) <= 4 * MAX_TEXT:
        return safe_text(value)
    return None
