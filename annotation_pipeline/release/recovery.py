"""One publisher at a time, and what a crashed publisher left behind.

``publish_lock`` is an exclusive ``flock`` on ``releases/.publish.lock``: threads and processes
on one host (the embedded default, one Dagster code server) queue on it. Across hosts the
Dagster concurrency pool ``dataset_release`` (limit 1) serializes the release step; flock over
NFS is not to be relied on.

A publish writes, in order: a staging folder, the release folder (renamed into place, then
``dvc add``-ed, pushed and made read-only), the index line, the audit event. A crash leaves:

- a staging folder, or a release folder and ``.dvc`` file that no index line names: removed
  by the next publish, even when read-only (modes are restored first; ownership by another
  user needs that user or root, and the error says so);
- a torn index line (the file ends mid-line, not JSON): cut off, with an audit event saying
  so; its release folder is then a leftover like any other;
- an index line without its audit event: the next publish appends the event, marked
  ``reconciled``, so the release does not stay unaudited.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from annotation_pipeline.audit import append_audit_event
from annotation_pipeline.release.integrity import RELEASE_EVENT, IndexLine


@contextlib.contextmanager
def publish_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # blocks until the other publisher is done
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_leftover(path: Path) -> None:
    """Remove a crash leftover, restoring write permission on read-only folders first."""
    try:
        if path.is_dir() and not path.is_symlink():
            _make_writable(path)
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except PermissionError as exc:
        owner = path.lstat().st_uid if path.exists() else "?"
        raise PermissionError(exc.errno, f"cannot remove {path}, left by a crashed release (owned by uid "
                              f"{owner}): remove it as that user or as root, then rerun the release",
                              exc.filename) from None


def _make_writable(top: Path) -> None:
    """u+rwx on every folder (top-down, so each can be listed), u+w on every file."""
    os.chmod(top, stat.S_IMODE(top.lstat().st_mode) | stat.S_IRWXU)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                os.chmod(sub, stat.S_IMODE(os.lstat(sub).st_mode) | stat.S_IRWXU)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IWUSR)


def reconcile_audit(root: Path, lines: list[IndexLine], events: dict[str, dict]) -> list[str]:
    """Append the audit event of each indexed release that has none; the versions reconciled."""
    reconciled = []
    for line in lines:
        info = line.record
        if info["version"] in events:
            continue
        append_audit_event(root, RELEASE_EVENT, version=info["version"], fingerprint=info.get("fingerprint"),
                           parent=info.get("parent"), n_labels=info.get("n_labels"), dvc_md5=info.get("dvc_md5"),
                           manifest_sha256=info.get("manifest_sha256"), index_line_sha256=line.sha256,
                           partitions=info.get("partitions"), reconciled=True,
                           note="the publish crashed between its index line and its audit line")
        reconciled.append(info["version"])
    return reconciled


def cut_torn_index_line(root: Path, index: Path) -> bool:
    """Remove a last index line a crash left half-written; True when one was removed."""
    if not index.is_file():
        return False
    data = index.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
        return False  # whole, only its newline is missing: a line like any other
    except ValueError:
        pass
    with index.open("r+b") as fh:
        fh.truncate(start)
        os.fsync(fh.fileno())
    append_audit_event(root, "release_index_repaired", removed_bytes=len(data) - start,
                       removed_sha256=hashlib.sha256(data[start:]).hexdigest(),
                       note="a crash left the index's last line half-written; it was cut off")
    return True
