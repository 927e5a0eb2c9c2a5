"""Listing a landing folder without trusting it: every entry found, nothing followed, nothing blocked.

The folder is walked with ``os.scandir`` and ``lstat`` only, so a symbolic link is seen as a
link (never as its target), a FIFO is never opened (opening one blocks until a writer
comes) and a device node is never read. Decisions:

- **Sub-folders are ingested recursively** (an upload tool that keeps its folders loses
  nothing), down to :data:`MAX_FOLDER_DEPTH` levels; a deeper or unreadable folder is one
  quarantined entry.
- **Symbolic links are quarantined, all of them**: links that leave the landing folder,
  dangling links, and links that stay inside it too. A link inside points at a file that is
  ingested in its own right, so nothing is lost; following links would let an upload name
  any file on the machine.
- FIFOs, sockets and device nodes are quarantined as "not a regular file".
- ``<name>.json`` beside ``<name>`` is that file's sidecar and is part of its entry; a
  ``.json`` file with no file beside it is an entry of its own (quarantined as an orphan).

Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with ``fstat``, so a
file swapped for a link or a FIFO after the listing is refused, not followed or waited on.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_FOLDER_DEPTH = 8
SIDECAR_SUFFIX = ".json"


class EntryProblem(ValueError):
    """Why one landing entry cannot be ingested: a reason code and a sentence for a person."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class LandingEntry:
    """One thing found in the landing folder (a file with its sidecar slot, or a refused entry)."""

    relative: str                 # path relative to the landing folder (os.fsdecode: may hold surrogates)
    path: Path
    mode: int | None              # lstat st_mode; None when lstat failed
    sidecar: Path | None = None   # <name>.json beside it, if any entry has that name
    sidecar_mode: int | None = None
    problem: EntryProblem | None = None  # set for entries refused while listing

    @property
    def display_name(self) -> str:
        """The original name as text: undecodable bytes shown as \\xNN (restricted store only)."""
        return os.fsencode(self.relative).decode("utf-8", "backslashreplace")


def _kind_problem(mode: int) -> EntryProblem | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return EntryProblem("symlink", "symbolic links are never followed; copy the file itself into the "
                                       "landing folder")
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device node" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return EntryProblem("not_a_regular_file", f"the entry is {kind}; only regular files are ingested")


def list_landing_entries(landing_dir: Path) -> list[LandingEntry]:
    """Every entry under ``landing_dir`` (recursively), sorted by relative path; nothing opened."""
    entries: list[LandingEntry] = []
    if not os.path.lexists(landing_dir):
        return entries
    pending: list[tuple[Path, str, int]] = [(Path(landing_dir), "", 0)]
    while pending:  # iterative walk: no recursion limit to hit, no link ever followed
        folder, prefix, depth = pending.pop()
        try:
            with os.scandir(folder) as listing:
                found = {e.name: e for e in listing}
        except OSError as exc:
            if not prefix:
                raise  # the landing folder itself: the caller reports it for the whole day
            entries.append(LandingEntry(prefix.rstrip("/"), folder, None, problem=EntryProblem(
                "unreadable_folder", f"the folder cannot be listed ({exc.strerror}); fix its permissions")))
            continue
        for name in sorted(found):
            entry, relative = found[name], prefix + name
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                entries.append(LandingEntry(relative, Path(entry.path), None, problem=EntryProblem(
                    "unreadable_entry", f"the entry cannot be examined ({exc.strerror})")))
                continue
            if stat.S_ISDIR(mode):
                if depth + 1 > MAX_FOLDER_DEPTH:
                    entries.append(LandingEntry(relative, Path(entry.path), mode, problem=EntryProblem(
                        "folder_too_deep", f"sub-folders are ingested {MAX_FOLDER_DEPTH} levels deep at most; "
                                           "move its files up")))
                else:
                    pending.append((Path(entry.path), relative + "/", depth + 1))
                continue
            if name.endswith(SIDECAR_SUFFIX) and name[: -len(SIDECAR_SUFFIX)] in found \
                    and not found[name[: -len(SIDECAR_SUFFIX)]].is_dir(follow_symlinks=False):
                continue  # a sidecar: it travels with its file's entry
            problem = _kind_problem(mode)
            if problem is None and name.endswith(SIDECAR_SUFFIX):
                problem = EntryProblem("orphan_sidecar", "a .json sidecar with no file of the same name "
                                                         "beside it; upload its image or remove it")
            sidecar_entry = found.get(name + SIDECAR_SUFFIX)
            sidecar_mode = None
            if sidecar_entry is not None:
                try:
                    sidecar_mode = sidecar_entry.stat(follow_symlinks=False).st_mode
                except OSError:
                    sidecar_mode = None
            entries.append(LandingEntry(relative, Path(entry.path), mode,
                                        Path(sidecar_entry.path) if sidecar_entry is not None else None,
                                        sidecar_mode, problem))
    return sorted(entries, key=lambda e: os.fsencode(e.relative))


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, at most ``limit``; never follows a link, never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EntryProblem("symlink", "the entry became a symbolic link while being read; "
                                          "links are never followed") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise EntryProblem("name_too_long", "the file name is longer than the file system allows") from None
        raise EntryProblem("unreadable_file", f"the file cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        problem = _kind_problem(info.st_mode)
        if problem is not None:
            raise problem
        if info.st_size > limit:
            raise EntryProblem("too_large", f"{info.st_size} bytes exceeds the {limit} byte limit")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # the file grew while being read
            raise EntryProblem("too_large", f"more than {limit} bytes (the file grew while being read)")
        return b"".join(chunks)
    except OSError as exc:
        raise EntryProblem("unreadable_file", f"the file cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def read_sidecar_bytes(entry: LandingEntry, limit: int) -> bytes | None:
    """The sidecar's bytes, None when there is none; EntryProblem when its slot holds something else."""
    if entry.sidecar is None:
        return None
    if entry.sidecar_mode is None or not stat.S_ISREG(entry.sidecar_mode):
        what = ("a folder" if entry.sidecar_mode is not None and stat.S_ISDIR(entry.sidecar_mode)
                else "a symbolic link" if entry.sidecar_mode is not None and stat.S_ISLNK(entry.sidecar_mode)
                else "not a regular file")
        raise EntryProblem("invalid_metadata", f"the sidecar slot (<name>.json) is {what}; a sidecar must be "
                                               "a regular JSON file")
    try:
        return read_regular_file(entry.sidecar, limit)
    except EntryProblem as problem:
        raise EntryProblem("invalid_metadata", f"the sidecar: {problem.detail}") from None
