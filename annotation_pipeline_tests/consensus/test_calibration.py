"""A reliability table that cannot show calibration says so instead of drawing one dot."""

import numpy as np
import pytest

from annotation_pipeline.consensus.calibration import reliability_table, single_bin_note


def test_gold_all_in_one_bin_is_named_with_its_count_range_and_share_right():
    confidence = np.array([0.93, 0.97, 1.0, 0.95, 0.99])
    correct = np.array([True, True, False, True, True])
    note = single_bin_note(reliability_table(confidence, correct))
    assert note == ("all 5 gold items have confidence in [0.90, 1.00]: calibration cannot be judged "
                    "from this day; 80% right there")


def test_one_gold_item_reads_as_one_and_an_empty_table_gives_no_note():
    assert single_bin_note(reliability_table(np.array([0.42]), np.array([False]))) == (
        "the one gold item has confidence in [0.40, 0.50]: calibration cannot be judged from this day; "
        "0% right there")
    assert single_bin_note(reliability_table(np.array([]), np.array([]))) is None


@pytest.mark.parametrize("confidence", [[0.85, 0.95], [0.1, 0.5, 0.95]])
def test_gold_spread_over_two_bins_or_more_needs_no_note(confidence):
    confidence = np.array(confidence)
    assert single_bin_note(reliability_table(confidence, np.ones(len(confidence), bool))) is None


def test_the_note_reads_the_report_records_as_well_as_the_table():
    table = reliability_table(np.array([0.91, 0.92]), np.array([True, False]))
    assert single_bin_note(table.to_dict("records")) == single_bin_note(table)
    assert "50% right there" in single_bin_note(table)
