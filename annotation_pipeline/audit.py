"""The audit log: one JSON line per event under ``ROOT/audit/audit.jsonl``, hash-chained.

Each line carries ``seq`` (its 1-based line number) and ``prev_sha256``, the sha256 of the
previous line's bytes (``GENESIS`` for the first line). Editing, deleting, inserting or
reordering a line breaks the chain at the next line; ``verify_audit_chain`` names the first
bad line. Deleting the *last* lines leaves a valid shorter chain, so every append also writes
``audit.head.json`` (line count and sha256 of the last line): a log shorter than its head, or
whose line at the head differs, was truncated or edited at its end.

Appends hold an exclusive ``flock`` on the log, so two processes never chain onto the same
line (a fork); each append is fsync'd before the head moves. Lines written before chaining
existed (no ``prev_sha256``) are accepted only as a prefix: the first chained line pins them.

The chain is tamper *evidence* on one volume: someone who can rewrite every file can rebuild
the whole chain. The anchors outside the root are the Dagster event log (each release's
materialization records its manifest sha256) and the DVC remote (content-addressed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from annotation_pipeline.atomic_files import write_bytes_atomic
from annotation_pipeline.layout import DataLayout

GENESIS = "0" * 64
_TAIL_BLOCK = 8192


def line_sha256(line: bytes | str) -> str:
    """The sha256 of one log line, without its newline: what the next line's ``prev_sha256`` holds."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    return hashlib.sha256(data.rstrip(b"\n")).hexdigest()


def append_audit_event(root: Path, event: str, **fields) -> dict:
    """Append one chained event and return it; fsync'd so that a crash right after cannot lose it."""
    layout = DataLayout(root)
    path = layout.audit_log
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
        last, n_lines, torn = _tail(fh)
        record = {"seq": n_lines + 1, "at": datetime.now(timezone.utc).isoformat(), "event": event, **fields,
                  "prev_sha256": line_sha256(last) if last is not None else GENESIS}
        line = json.dumps(record, default=str, ensure_ascii=True).encode("utf-8")
        # A torn last line (a crash mid-write) stays as evidence; ours starts on a line of its own.
        fh.write((b"\n" if torn else b"") + line + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
        write_bytes_atomic(layout.audit_head, json.dumps(
            {"lines": record["seq"], "sha256": line_sha256(line)}).encode())
    return record


def _tail(fh) -> tuple[bytes | None, int, bool]:
    """(last line, number of lines, whether the file ends mid-line) of the open log."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return None, 0, False
    fh.seek(size - 1)
    torn = fh.read(1) != b"\n"
    end = size if torn else size - 1  # where the last line's bytes end
    start, pos, buf = 0, end, b""
    while pos > 0:  # read backwards until the newline before the last line
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        fh.seek(pos)
        buf = fh.read(step) + buf
        cut = buf.rfind(b"\n", 0, end - pos)
        if cut >= 0:
            start = pos + cut + 1
            break
    fh.seek(start)
    last = fh.read(end - start)
    try:
        n_lines = int(json.loads(last)["seq"])  # the line count, without reading the whole log
    except (ValueError, KeyError, TypeError):  # a legacy or torn last line: count the lines
        fh.seek(0)
        n_lines = sum(1 for _ in fh)
    return last, n_lines, torn


def read_audit_lines(root: Path) -> list[bytes]:
    path = DataLayout(root).audit_log
    return path.read_bytes().splitlines() if path.exists() else []


def read_audit_events(root: Path) -> list[dict]:
    """Every parseable event, each with ``line`` (1-based) and ``line_sha256`` added."""
    events = []
    for number, raw in enumerate(read_audit_lines(root), start=1):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append({**event, "line": number, "line_sha256": line_sha256(raw)})
    return events


def verify_audit_chain(root: Path) -> list[str]:
    """Problems with the audit log, one sentence each, naming the first bad line; empty when intact."""
    layout = DataLayout(root)
    lines = read_audit_lines(root)
    problems = _chain_problems(lines)
    if layout.audit_head.exists():
        try:
            head = json.loads(layout.audit_head.read_text())
            n_head, sha_head = int(head["lines"]), str(head["sha256"])
        except (ValueError, KeyError, TypeError):
            return problems + [f"{layout.audit_head}: not a valid audit head (expected JSON with lines and sha256)"]
        if len(lines) < n_head:
            where = "" if problems else f": truncated after line {len(lines)}"
            problems.append(f"audit log: {len(lines)} lines but {n_head} were written (lines deleted{where})")
        elif line_sha256(lines[n_head - 1]) != sha_head:
            problems.append(f"audit log line {n_head}: differs from the recorded head (the line was edited)")
    elif lines and any(b"prev_sha256" in line for line in lines):
        problems.append(f"{layout.audit_head}: missing (the audit head was deleted)")
    return problems


def _chain_problems(lines: list[bytes]) -> list[str]:
    chained = False
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            return [f"audit log line {number}: not a JSON object (edited, or a torn write)"]
        if "prev_sha256" not in record:
            if chained:
                return [f"audit log line {number}: has no prev_sha256 (edited: every line after the first "
                        "chained one must carry it)"]
            continue
        chained = True
        expected_prev = line_sha256(lines[number - 2]) if number > 1 else GENESIS
        if record.get("seq") != number:
            return [f"audit log line {number}: seq {record.get('seq')} where {number} was expected "
                    "(lines were deleted, inserted or reordered before it)"]
        if record["prev_sha256"] != expected_prev:
            return [f"audit log line {number}: prev_sha256 does not match line {number - 1} "
                    f"(line {number - 1} was edited)"]
    return []
