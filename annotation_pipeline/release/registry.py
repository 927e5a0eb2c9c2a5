"""The data root as a DVC data registry under git: each release a commit, tagged ``dataset-vNNNN``.

DVC users expect a data registry they can address by git revision::

    dvc get ROOT releases/v0003 --rev dataset-v0003 -o v0003

restores release v0003 byte for byte anywhere its DVC remote is reachable, because the git
repository holds what addresses the content (the ``.dvc`` pointer, the release index and the
DVC config naming the remote) and the remote holds the content. If the data-root volume is
lost, a clone of the registry (pushed to a shared git remote, see README) still addresses
every release.

Only those small files are ever committed: the root's ``.gitignore`` ignores everything else
(raw uploads, the restricted store, tables), so personal data can never enter git history by
accident. Commits are made with a fixed identity, so the registry needs no git configuration.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from annotation_pipeline.layout import DataLayout

TAG_PREFIX = "dataset-"
# Whitelist: git sees only the top-level entries that address releases; everything else under
# the root stays out. Inside them, DVC's own .gitignore files keep the release folders
# (releases/.gitignore, written by `dvc add`) and its cache and tmp (.dvc/.gitignore) out.
# (Negations deeper than the top level, like "!/releases/*.dvc", hide the .dvc files from DVC's
# own walker in git mode: `dvc push` then finds nothing. Keep the patterns one level deep.)
GITIGNORE = """\
# Written by annotation_pipeline: the data root is a DVC registry; only release pointers are versioned.
/*
!/.gitignore
!/.dvcignore
!/.dvc
!/releases
"""
_IDENTITY = ["-c", "user.name=annotation-pipeline", "-c", "user.email=releases@annotation-pipeline.invalid",
             "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]


class RegistryError(RuntimeError):
    """git refused an operation on the registry; the message carries git's own words."""


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *_IDENTITY, "-C", str(root), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RegistryError(f"git {' '.join(args)} in {root}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def tag_for(version: str) -> str:
    return f"{TAG_PREFIX}{version}"


def ensure_registry(root: Path) -> None:
    """Make the root a git repository with the whitelist ``.gitignore`` (idempotent)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ignore = DataLayout(root).registry_gitignore
    if not ignore.exists() or ignore.read_text() != GITIGNORE:
        ignore.write_text(GITIGNORE)
    if not (root / ".git").exists():
        _git(root, "init", "-q", "-b", "main")


def record_release(root: Path, version: str) -> str:
    """Commit the release's pointer and the index, and tag it; returns the tagged commit.

    A rerun finds the tag and returns its commit: a release is recorded once.
    """
    root = Path(root)
    ensure_registry(root)
    tag = tag_for(version)
    if _git(root, "tag", "--list", tag):
        return _git(root, "rev-list", "-n", "1", tag)
    layout = DataLayout(root)
    pointer = layout.release_pointer(version)
    if not pointer.exists():
        raise RegistryError(f"release {version} has no DVC pointer at {pointer}; publish it first")
    tracked = [p for p in layout.registry_files(version) if p.exists()]
    _git(root, "add", "--", *(str(p.relative_to(root)) for p in tracked))
    if _git(root, "status", "--porcelain", "--untracked-files=no"):
        _git(root, "commit", "-q", "-m", f"dataset release {version}")
    _git(root, "tag", "-a", tag, "-m", f"dataset release {version}")
    return _git(root, "rev-list", "-n", "1", tag)


def recorded_versions(root: Path) -> list[str]:
    """Versions that have a tag in the registry (empty when the root is not a registry yet)."""
    if not (Path(root) / ".git").exists():
        return []
    tags = _git(Path(root), "tag", "--list", f"{TAG_PREFIX}*").split()
    return sorted(t.removeprefix(TAG_PREFIX) for t in tags)
