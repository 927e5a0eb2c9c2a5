"""The consensus benchmark's sign test: does it count only the items where exactly one side is right?"""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_consensus_methods.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_consensus_methods", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_items_both_get_right_or_both_get_wrong_and_items_without_truth_are_not_counted(bench):
    truth = pd.Series(["a"] * 8 + ["b"] * 3, index=[f"i{n}" for n in range(11)])
    # i0-i4: only `labels` right; i5: only `reference` right; i6-i7: both right; i8-i10: both wrong
    labels = pd.Series(["a"] * 5 + ["b"] + ["a", "a"] + ["c", "c", "a"] + ["a"],
                       index=[f"i{n}" for n in range(11)] + ["no truth"])
    reference = pd.Series(["b"] * 5 + ["a"] + ["a", "a"] + ["c", "a", "c"] + ["b"],
                          index=[f"i{n}" for n in range(11)] + ["no truth"])
    result = bench.paired_sign_test(labels, reference, truth)
    assert (result["auto only right"], result["best only right"]) == (5, 1)
    # two-sided exact binomial, 5 of 6 at p = 1/2: (1 + 6 + 6 + 1) / 64
    assert result["sign test p"] == pytest.approx(14 / 64)


def test_a_gap_of_one_item_on_a_small_set_is_not_significant_and_a_large_one_is(bench):
    index = [f"i{n}" for n in range(40)]
    truth = pd.Series(["a"] * 40, index=index)
    reference = pd.Series(["a"] * 40, index=index)
    one_worse = reference.copy()
    one_worse.iloc[0] = "b"
    assert bench.paired_sign_test(one_worse, reference, truth)["sign test p"] == pytest.approx(1.0)
    many_worse = pd.Series(["b"] * 10 + ["a"] * 30, index=index)
    assert bench.paired_sign_test(many_worse, reference, truth)["sign test p"] == pytest.approx(2 / 1024)


def test_no_disagreement_is_no_evidence(bench):
    truth = pd.Series(["a", "b"], index=["x", "y"])
    assert bench.paired_sign_test(truth, truth, truth) == {"auto only right": 0, "best only right": 0,
                                                            "sign test p": 1.0}
