"""Agreement figures match the reference implementations on random data with missing answers."""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from annotation_pipeline.consensus.agreement import (
    agreement_table,
    class_agreement,
    cohen_kappa_pairwise,
    cohen_kappa_pairwise_mean,
    cohen_kappa_vs_reference,
    fleiss_kappa,
    iou_agreement,
    krippendorff_alpha_nominal,
)
from annotation_pipeline.consensus.boxes import merge_boxes_by_iou
from annotation_pipeline.contracts import AGREEMENT_METRICS

CLASSES = np.array(["day", "night", "fog", "rain"])


def noisy_answers(seed: int, n_items: int = 300, n_annotators: int = 6,
                  p_missing: float = 0.3) -> pd.DataFrame:
    """Annotators of varying accuracy; each skips an item with probability ``p_missing``."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, n_items)
    accuracy = rng.uniform(0.4, 0.95, n_annotators)
    item, annotator = np.meshgrid(np.arange(n_items), np.arange(n_annotators), indexing="ij")
    item, annotator = item.ravel(), annotator.ravel()
    correct = rng.random(len(item)) < accuracy[annotator]
    label = np.where(correct, truth[item], rng.integers(0, 4, len(item)))
    answered = rng.random(len(item)) >= p_missing
    return pd.DataFrame({"item_id": [f"i{i}" for i in item[answered]],
                         "annotator_id": [f"a{a}" for a in annotator[answered]],
                         "label": CLASSES[label[answered]]})


def reliability_matrix(answers: pd.DataFrame) -> np.ndarray:
    """annotators × items with NaN for a missing answer (the krippendorff package's input)."""
    codes = {c: k for k, c in enumerate(CLASSES)}
    wide = answers.pivot(index="annotator_id", columns="item_id", values="label")
    return wide.apply(lambda col: col.map(codes)).to_numpy(dtype=float)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairwise_cohen_kappa_matches_scikit_learn_on_every_pair(seed):
    answers = noisy_answers(seed)
    ours = cohen_kappa_pairwise(answers).set_index(["annotator_a", "annotator_b"])
    wide = answers.pivot(index="item_id", columns="annotator_id", values="label")
    expected = []
    for a, b in itertools.combinations(sorted(wide.columns), 2):
        both = wide[[a, b]].dropna()
        reference = cohen_kappa_score(both[a], both[b])
        got = ours.loc[(a, b)] if (a, b) in ours.index else ours.loc[(b, a)]
        assert got["n"] == len(both)
        assert got["kappa"] == pytest.approx(reference, abs=1e-12)
        expected.append(reference)
    assert cohen_kappa_pairwise_mean(answers) == pytest.approx(np.mean(expected), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_krippendorff_alpha_with_missing_answers_matches_the_krippendorff_package(seed):
    answers = noisy_answers(seed, p_missing=0.45)
    reference = krippendorff.alpha(reliability_data=reliability_matrix(answers),
                                   level_of_measurement="nominal")
    assert krippendorff_alpha_nominal(answers) == pytest.approx(reference, abs=1e-10)


def test_one_vs_rest_class_alpha_matches_the_krippendorff_package():
    answers = noisy_answers(5)
    table = class_agreement(answers).set_index("label")
    for label in CLASSES:
        binary = answers.assign(label=np.where(answers["label"] == label, "day", "night"))
        reference = krippendorff.alpha(reliability_data=reliability_matrix(binary),
                                       level_of_measurement="nominal")
        assert table.loc[label, "krippendorff_alpha"] == pytest.approx(reference, abs=1e-10)
        assert table.loc[label, "n"] == (answers["label"] == label).sum()


def test_fleiss_kappa_reproduces_the_published_fleiss_1971_example():
    # Fleiss (1971) / Wikipedia worked example: 10 items, 14 raters, 5 categories, kappa 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                       [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                       [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    rows = [(f"item{i}", f"rater{r}", f"c{c}") for i, row in enumerate(counts)
            for c, count in enumerate(row) for r in range(count)]
    # rater ids must be distinct per item; the statistic only uses the per-item counts
    answers = pd.DataFrame(rows, columns=["item_id", "annotator_id", "label"])
    answers["annotator_id"] = answers.groupby("item_id").cumcount().astype(str)
    assert fleiss_kappa(answers) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_with_two_raters_equals_scotts_pi_definition():
    # with exactly two raters per item Fleiss' kappa is Scott's pi: (Po - Pe) / (1 - Pe) with
    # Pe from the pooled marginals
    answers = noisy_answers(3, n_annotators=2, p_missing=0.0)
    wide = answers.pivot(index="item_id", columns="annotator_id", values="label")
    observed = (wide["a0"] == wide["a1"]).mean()
    pooled = pd.concat([wide["a0"], wide["a1"]]).value_counts(normalize=True)
    expected = (pooled ** 2).sum()
    assert fleiss_kappa(answers) == pytest.approx((observed - expected) / (1 - expected))


def test_undefined_agreement_is_nan_not_a_made_up_number():
    same = pd.DataFrame({"item_id": ["x", "x", "y", "y"], "annotator_id": ["a", "b", "a", "b"],
                         "label": ["day"] * 4})
    assert np.isnan(cohen_kappa_pairwise_mean(same))
    assert np.isnan(fleiss_kappa(same))
    assert np.isnan(krippendorff_alpha_nominal(same))


def test_annotator_kappa_against_consensus_matches_scikit_learn():
    answers = noisy_answers(7)
    consensus = answers.groupby("item_id")["label"].agg(lambda s: s.mode().iloc[0]).reset_index()
    ours = cohen_kappa_vs_reference(answers, consensus).set_index("annotator_id")
    joined = answers.merge(consensus, on="item_id", suffixes=("", "_ref"))
    for annotator, part in joined.groupby("annotator_id"):
        assert ours.loc[annotator, "kappa"] == pytest.approx(
            cohen_kappa_score(part["label"], part["label_ref"]), abs=1e-12)
        assert ours.loc[annotator, "accuracy"] == pytest.approx(
            (part["label"] == part["label_ref"]).mean())


def test_iou_agreement_ranks_a_sloppy_annotator_below_careful_ones():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (200, 2))
    rows = []
    for annotator, jitter in (("careful1", 0.5), ("careful2", 0.5), ("sloppy", 6.0)):
        noise = rng.normal(0, jitter, (200, 4))
        rows.append(pd.DataFrame({"item_id": np.arange(200).astype(str), "annotator_id": annotator,
                                  "label": "car", "x_min": truth[:, 0] + noise[:, 0],
                                  "y_min": truth[:, 1] + noise[:, 1],
                                  "x_max": truth[:, 0] + 40 + noise[:, 2],
                                  "y_max": truth[:, 1] + 40 + noise[:, 3]}))
    members = merge_boxes_by_iou(pd.concat(rows)).members
    table = iou_agreement(members)
    per_annotator = table[(table.scope == "annotator") & (table.metric == "mean_iou")].set_index("key")
    assert per_annotator.loc["sloppy", "value"] < per_annotator.loc["careful1", "value"]
    assert per_annotator.loc["careful2", "value"] > 0.8


def test_agreement_table_conforms_to_the_contract_with_every_scope():
    answers = noisy_answers(1).assign(batch_id="b1")
    consensus = answers.groupby("item_id")["label"].first().reset_index()
    table = AGREEMENT_METRICS.conform(agreement_table(answers, consensus=consensus))
    assert set(table["scope"]) == {"batch", "class", "annotator"}
    batch = table[table.scope == "batch"].set_index("metric")["value"]
    assert batch["krippendorff_alpha"] == pytest.approx(krippendorff_alpha_nominal(answers))
    assert set(table.loc[table.scope == "class", "key"]) == set(CLASSES)
