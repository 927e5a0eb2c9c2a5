"""Table contracts: the one missing-column check, and a contract for every table auditors read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.contracts import (
    ALL_CONTRACTS,
    ANNOTATOR_SCORECARDS,
    INTAKE_LEDGER,
    PROVENANCE,
    ContractError,
    missing_columns,
    require_columns,
)


def test_a_missing_column_is_named_with_what_was_read_and_what_was_expected():
    frame = pd.DataFrame({"item_id": ["a"], "extra": [1]})
    with pytest.raises(ContractError) as caught:
        require_columns(frame, ["item_id", "annotator_id", "label"], "answers.csv", "export it again from the tool")
    assert str(caught.value) == ("answers.csv: missing column(s) annotator_id, label; "
                                 "expected item_id, annotator_id, label; export it again from the tool")
    require_columns(frame, ["item_id"], "answers.csv")  # present: nothing raised
    assert missing_columns(frame, ["label", "item_id", "vendor"]) == ["label", "vendor"]


def test_conform_and_validate_report_missing_columns_through_the_same_check():
    frame = INTAKE_LEDGER.empty().drop(columns=["partition_date"])
    for check in (INTAKE_LEDGER.conform, INTAKE_LEDGER.validate):
        with pytest.raises(ContractError, match=r"^intake_ledger: missing column\(s\) partition_date; expected "
                                                r"source_sha256, partition_date$"):
            check(frame)


def test_every_contract_has_a_unique_name_and_an_empty_frame_that_validates():
    names = [c.name for c in ALL_CONTRACTS]
    assert len(names) == len(set(names))
    assert {"annotator_scorecards", "provenance", "intake_files", "intake_ledger"} <= set(names)
    for contract in ALL_CONTRACTS:
        contract.validate(contract.empty())


def test_scorecards_keep_undefined_figures_empty_but_never_lose_an_annotator():
    cards = ANNOTATOR_SCORECARDS.conform(pd.DataFrame({
        "annotator_id": ["ann-01", "ann-02"], "n_answers": [19, 3], "n_tasks": [6, 1], "gold_tasks": [2, 0],
        "gold_accuracy": [1.0, np.nan], "rework_rate": [0.0, 1 / 3], "median_lead_time_s": [30.0, np.nan],
        "agreement_with_consensus": [np.nan, np.nan]}))
    assert cards["gold_accuracy"].isna().tolist() == [False, True]
    with pytest.raises(ContractError, match="annotator_id.*not nullable"):
        ANNOTATOR_SCORECARDS.conform(cards.assign(annotator_id=[None, "ann-02"]))


def test_provenance_requires_the_label_and_answer_ids_but_not_a_joined_raw_item():
    row = {c: "x" for c in PROVENANCE.column_names}
    ok = PROVENANCE.conform(pd.DataFrame([{**row, "raw_path": None, "raw_source_file": None}]))
    assert ok["raw_path"].isna().all()
    with pytest.raises(ContractError, match="annotation_id"):
        PROVENANCE.conform(pd.DataFrame([{**row, "annotation_id": None}]))
