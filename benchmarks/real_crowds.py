"""Real crowds with known truth, in one shape, and a table of their size and crowd-kit accuracy.

Every set here is real crowd workers' answers plus the true label of (some of) the items, as
``../shared/crowd-data/*/answers.csv`` (``item_id, annotator_id, label``) and ``gold.csv``
(``item_id, label``), labels read as strings (class codes). The shared development sets are read in
place (README there) and skipped cleanly when the folder is absent.

Issue #23 asked for more such sets from registry packages (PyPI, Debian, npm: all this machine
reaches). None was found that bundles real answers *with* truth; the packages checked and what each
holds are in benchmarks/results_consensus.md, "Real crowds used".

Run: python benchmarks/real_crowds.py
  prints, for every set: items, items with truth, workers, answers, classes, median answers per
  worker, and the accuracy on the truth of crowd-kit's MajorityVote and DawidSkene(n_iter=100).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_CROWD_DATA = ROOT.parent.parent / "shared" / "crowd-data"  # /work/shared/crowd-data from a worktree

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


def real_crowds() -> Iterator[Crowd]:
    """(name, description, answers, gold) for every real crowd with truth this machine can have.

    Today that is the shared development sets only: no package on PyPI, Debian or npm was found to
    bundle one (benchmarks/results_consensus.md, "Real crowds used", lists the packages checked).
    A set found later goes here as one more generator: its archive fetched by the registry's own
    client into ``~/.cache/annotation-pipeline/crowds/<package>`` (outside the repository, never
    into it), its CSV/TSV members parsed, never unpickled or evaluated.
    """
    yield from shared_crowds()


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
    parser.parse_args()
    rows = []
    for name, description, answers, gold in real_crowds():
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
