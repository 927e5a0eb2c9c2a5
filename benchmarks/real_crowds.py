"""Real crowds with known truth, in one shape, and a table of their size and crowd-kit accuracy.

Every set here is real crowd workers' answers plus the true label of (some of) the items, as
``../shared/crowd-data/*/answers.csv`` (``item_id, annotator_id, label``) and ``gold.csv``
(``item_id, label``), labels read as strings (class codes). The shared development sets are read in
place (README there) and skipped cleanly when the folder is absent.

Issue #23 asked for more such sets from registry packages (PyPI, Debian, npm: all this machine
reaches). None was found that bundles real answers *with* truth (the packages checked are in
benchmarks/results_consensus.md, "Real crowds used"). Eleven more public sets were copied from the
stored copy of ``yuan-li/truth-inference-at-scale`` (MIT) that this workplace's search tool holds
(``EXTRA_SETS`` below: where each comes from). They are kept outside the repository, in
``$ANNOTATION_PIPELINE_CROWDS`` (default ``~/.cache/annotation-pipeline/crowds``), one folder per
set in the same shape as the shared ones, and skipped cleanly when absent. ``import`` converts a
folder in that repository's layout (``label.csv``: item,worker,label; ``truth.csv``: item,truth).

Run: python benchmarks/real_crowds.py
     python benchmarks/real_crowds.py import SRC_FOLDER NAME   (label.csv/truth.csv -> the cache)
  prints, for every set: items, items with truth, workers, answers, classes, median answers per
  worker, the accuracy on the truth of crowd-kit's MajorityVote and DawidSkene(n_iter=100), and,
  where only some items have truth, whether those items look like the rest (``truth_sample``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_CROWD_DATA = ROOT.parent.parent / "shared" / "crowd-data"  # /work/shared/crowd-data from a worktree
EXTRA_CROWD_DATA = Path(os.environ.get("ANNOTATION_PIPELINE_CROWDS")
                        or Path.home() / ".cache" / "annotation-pipeline" / "crowds")

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
    yield from _folders(base, DEV_DESCRIPTIONS, "development set")


# --------------------------------------------------------------------------------------------
# Sets beyond the development set
# --------------------------------------------------------------------------------------------

_YL = "yuan-li/truth-inference-at-scale @ ff6d329, data/"
# name -> what it is, and where in that repository it comes from (its data/ folder credits the
# original releases: Welinder 2010; Snow 2008; Zhou 2012; Rodrigues 2013; Demartini 2012; Venanzi
# 2015; Zheng 2017's truth-inference survey)
EXTRA_SETS = {
    "bluebird": "is the bird an Indigo Bunting or a Blue Grosbeak, 2 classes, 39 workers on every "
                "item (Welinder et al. 2010) - " + _YL + "SpectralMethodsMeetEM/bluebird",
    "rte": "recognising textual entailment, 2 classes, 164 workers (Snow et al. 2008) - "
           + _YL + "SpectralMethodsMeetEM/rte",
    "web": "web search relevance, 5 ordinal classes (Zhou et al. 2012) - "
           + _YL + "SpectralMethodsMeetEM/web",
    "CF": "weather sentiment, 5 classes, CrowdFlower (Venanzi et al. 2015) - "
          + _YL + "active-crowd-toolkit/CF",
    "CF_amt": "weather sentiment, 5 classes, Mechanical Turk (Venanzi et al. 2015) - "
              + _YL + "active-crowd-toolkit/CF_amt",
    "SP": "sentence sentiment polarity, 2 classes (Rodrigues et al. 2013) - "
          + _YL + "active-crowd-toolkit/SP",
    "SP_amt": "sentence sentiment polarity, 2 classes, Mechanical Turk - "
              + _YL + "active-crowd-toolkit/SP_amt",
    "ZenCrowd_all": "entity linking, 2 classes (Demartini et al. 2012) - "
                    + _YL + "active-crowd-toolkit/ZenCrowd_all",
    "face_sentiment": "facial expression, 4 classes (Zheng et al. 2017) - "
                      + _YL + "crowd_truth_inference/s4_Face Sentiment Identification",
    "d_sentiment": "tweet sentiment, 2 classes (Zheng et al. 2017) - "
                   + _YL + "crowd_truth_inference/d_sentiment",
    "jn_product": "product entity matching, 2 classes (Zheng et al. 2017) - "
                  + _YL + "crowd_truth_inference/d_jn-product",
}


def extra_crowds(base: Path = EXTRA_CROWD_DATA) -> Iterator[Crowd]:
    """Real sets imported into the crowd cache (``import``); none (with a note) when it is empty."""
    if not base.exists():
        print(f"(no imported crowds at {base}: only the development sets)", file=sys.stderr)
        return
    yield from _folders(base, EXTRA_SETS, "imported set")


def _folders(base: Path, descriptions: dict[str, str], default: str) -> Iterator[Crowd]:
    for folder in sorted(p for p in base.iterdir() if (p / "answers.csv").exists() and (p / "gold.csv").exists()):
        answers = pd.read_csv(folder / "answers.csv", dtype=str)
        gold = pd.read_csv(folder / "gold.csv", dtype=str)
        yield folder.name, descriptions.get(folder.name, default), answers, gold


def real_crowds() -> Iterator[Crowd]:
    """(name, description, answers, gold) for every real crowd with truth this machine has.

    The shared development sets, then the sets imported into the crowd cache. A set found later
    goes into the cache the same way (``import``), never into the repository; its CSVs are parsed,
    never unpickled or evaluated.
    """
    yield from shared_crowds()
    yield from extra_crowds()


def import_label_truth(source: Path, name: str, base: Path = EXTRA_CROWD_DATA) -> Path:
    """``label.csv`` (item,worker,label) and ``truth.csv`` (item,truth) -> ``base/name``'s
    ``answers.csv`` and ``gold.csv``; every row is kept as it is (ids and labels as strings)."""
    label = pd.read_csv(source / "label.csv", dtype=str)
    truth = pd.read_csv(source / "truth.csv", dtype=str)
    if list(label.columns) != ["item", "worker", "label"] or list(truth.columns) != ["item", "truth"]:
        raise SystemExit(f"{source}: expected label.csv item,worker,label and truth.csv item,truth; "
                         f"got {list(label.columns)} and {list(truth.columns)}")
    target = base / name
    target.mkdir(parents=True, exist_ok=True)
    label.set_axis(["item_id", "annotator_id", "label"], axis=1).to_csv(target / "answers.csv", index=False)
    truth.set_axis(["item_id", "label"], axis=1).to_csv(target / "gold.csv", index=False)
    return target


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    common = truth.index.intersection(labels.index)
    return float((labels.reindex(common).astype(str).to_numpy() == truth.reindex(common).to_numpy()).mean())


def truth_sample(answers: pd.DataFrame, gold: pd.DataFrame) -> dict[str, object]:
    """Are the items with truth a sample of all items, as far as the crowd can tell?

    Accuracy on a sparse truth estimates accuracy on the whole set only if the truth items are
    like the others. Their crowd answers can say whether they are: each item's most answered
    class (ties to the first by label) is tabled for items with truth and items without, and a
    chi-square test of independence gives the chance of a difference at least this large if the
    truth items had been drawn at random. None when every item (or none) has truth.
    """
    from scipy.stats import chi2_contingency

    counts = answers.groupby(["item_id", "label"]).size().rename("n").reset_index()
    top = counts.sort_values(["item_id", "n", "label"], ascending=[True, False, True]).drop_duplicates("item_id")
    has_truth = top["item_id"].isin(gold["item_id"])
    if has_truth.all() or not has_truth.any():
        return {"truth items' majority class (share)": "all items", "rest": "", "chi2 p": np.nan}
    table = pd.crosstab(top["label"], has_truth)
    shares = table / table.sum()
    main_class = shares[True].idxmax()
    p_value = float(chi2_contingency(table.to_numpy())[1])
    return {"truth items' majority class (share)": f"{main_class}: {shares.loc[main_class, True]:.2f}",
            "rest": f"{main_class}: {shares.loc[main_class, False]:.2f}", "chi2 p": p_value}


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
        **truth_sample(answers, gold),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    imp = commands.add_parser("import", help="convert label.csv/truth.csv into the crowd cache")
    imp.add_argument("source", type=Path)
    imp.add_argument("name")
    args = parser.parse_args()
    if args.command == "import":
        print(f"{args.name} -> {import_label_truth(args.source, args.name)}")
        return
    rows = []
    for name, description, answers, gold in real_crowds():
        rows.append({"dataset": name, **describe(answers, gold), "what": description})
    table = pd.DataFrame(rows).set_index("dataset")
    shown = table.drop(columns="what")
    floatfmt = [""] + [".4f" if c.startswith("crowd-kit") else ".1f" if "median" in c
                       else ".1e" if c == "chi2 p" else ".0f" for c in shown.columns]
    print(shown.to_markdown(floatfmt=floatfmt))
    print()
    for name, what in table["what"].items():
        print(f"- {name}: {what}")


if __name__ == "__main__":
    main()
