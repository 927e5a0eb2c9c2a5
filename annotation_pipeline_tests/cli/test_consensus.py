"""The consensus, agreement and merge-boxes commands, through ``cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.cli.main import main
from annotation_pipeline.consensus.agreement import krippendorff_alpha_nominal


@pytest.fixture
def answers_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        truth = ["day", "night", "fog"][i % 3]
        for a in range(4):
            label = truth if rng.random() < 0.85 else "rain"
            rows.append((f"item{i}", f"ann{a}", label))
    path = tmp_path / "answers.csv"
    pd.DataFrame(rows, columns=["item_id", "annotator_id", "label"]).to_csv(path, index=False)
    return path


def test_consensus_writes_one_label_per_item_with_confidence(answers_csv, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    assert main(["consensus", "--input", str(answers_csv), "--output", str(out),
                 "--method", "mv", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["item_id", "label", "confidence"]
    assert len(labels) == summary["items"] == 60
    assert summary["method"] == "mv"
    assert labels["confidence"].between(0, 1).all()


def test_consensus_auto_names_the_crowd_models_it_used_and_their_weights(answers_csv, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    assert main(["consensus", "--input", str(answers_csv), "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "auto" and summary["models_used"]
    assert list(summary["model_weights"]) == summary["models_used"]
    assert sum(summary["model_weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert main(["consensus", "--input", str(answers_csv), "--output", str(out)]) == 0
    shown = capsys.readouterr().out
    stack = " + ".join(f"{name} {w:.2f}" for name, w in summary["model_weights"].items())
    assert f"with auto ({stack})" in shown


def test_consensus_with_gold_and_wmv_uses_the_gold_weighted_vote(answers_csv, tmp_path, capsys):
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"item_id": ["item0", "item1"], "label": ["day", "night"]}).to_csv(gold, index=False)
    assert main(["consensus", "--input", str(answers_csv), "--output", str(tmp_path / "l.csv"),
                 "--gold", str(gold), "--method", "wmv"]) == 0
    assert "with wmv" in capsys.readouterr().out


def test_agreement_prints_the_three_figures_and_per_class(answers_csv, capsys):
    assert main(["agreement", "--input", str(answers_csv), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = krippendorff_alpha_nominal(pd.read_csv(answers_csv))
    assert result["krippendorff_alpha"] == pytest.approx(expected)
    assert {row["label"] for row in result["per_class"]} == {"day", "night", "fog", "rain"}
    assert main(["agreement", "--input", str(answers_csv)]) == 0
    assert "Fleiss' kappa" in capsys.readouterr().out


def test_a_file_without_the_label_column_is_named_in_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("item_id,annotator_id\na,b\n")
    assert main(["consensus", "--input", str(path), "--output", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: missing column(s) label" in err and "Traceback" not in err


def test_an_unreadable_csv_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\xff")
    assert main(["agreement", "--input", str(path)]) == 1
    assert "binary.csv" in capsys.readouterr().err


def test_a_missing_input_file_exits_1(tmp_path, capsys):
    assert main(["agreement", "--input", str(tmp_path / "nope.csv")]) == 1
    assert "nope.csv" in capsys.readouterr().err


def test_merge_boxes_merges_three_annotators_and_leaves_out_a_stray_box(tmp_path, capsys):
    path = tmp_path / "boxes.csv"
    rows = [("img1", f"a{k}", "car", 10 + k, 10, 50 + k, 40) for k in range(3)]
    rows.append(("img1", "a0", "person", 200, 200, 220, 260))
    pd.DataFrame(rows, columns=["item_id", "annotator_id", "label", "x_min", "y_min", "x_max",
                                "y_max"]).to_csv(path, index=False)
    out = tmp_path / "merged.csv"
    assert main(["merge-boxes", "--input", str(path), "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    merged = pd.read_csv(out)
    assert list(merged.columns) == ["item_id", "label", "x_min", "y_min", "x_max", "y_max",
                                    "confidence", "n_annotators"]
    # a0's stray box is never confirmed, so a0 weighs less than a1 and a2 in the fused corners:
    # between the plain mean (11) and the mean of the other two (11.5)
    assert len(merged) == 1 and 11.0 < merged.loc[0, "x_min"] < 11.5
    assert summary["objects_received"] == summary["objects_in_merged"] + summary["objects_below_quorum"]
    assert summary["clusters_below_quorum"] == 1


def test_merge_boxes_names_file_column_and_line_of_a_non_numeric_coordinate(tmp_path, capsys):
    path = tmp_path / "boxes.csv"
    path.write_text("item_id,annotator_id,label,x_min,y_min,x_max,y_max\n"
                    "img1,a0,car,1,2,3,4\nimg1,a1,car,1,two,3,4\n")
    assert main(["merge-boxes", "--input", str(path), "--output", str(tmp_path / "m.csv")]) == 1
    err = capsys.readouterr().err
    assert "boxes.csv: line 3: column y_min is not a number ('two')" in err


def test_merge_boxes_quorum_option_overrides_the_majority(tmp_path, capsys):
    path = tmp_path / "boxes.csv"
    rows = [("img1", "a0", "car", 10, 10, 50, 40), ("img1", "a1", "bike", 0, 0, 5, 5),
            ("img1", "a2", "bike", 100, 100, 150, 150)]
    pd.DataFrame(rows, columns=["item_id", "annotator_id", "label", "x_min", "y_min", "x_max",
                                "y_max"]).to_csv(path, index=False)
    out = tmp_path / "m.csv"
    assert main(["merge-boxes", "--input", str(path), "--output", str(out), "--quorum", "1"]) == 0
    assert len(pd.read_csv(out)) == 3


def _small_jittered_boxes(path, noise_sd: float, seed: int = 0):
    """Three annotators drawing the same 6 px objects with corner noise: plain IoU often misses them."""
    rng = np.random.default_rng(seed)
    rows = []
    for obj in range(40):
        x, y = 20.0 * obj, 10.0
        for k in range(3):
            jitter = rng.normal(0, noise_sd, 4)
            rows.append((f"img{obj % 4}", f"a{k}", "bird", x + jitter[0], y + jitter[1],
                         x + 6 + jitter[2], y + 6 + jitter[3]))
    pd.DataFrame(rows, columns=["item_id", "annotator_id", "label", "x_min", "y_min", "x_max",
                                "y_max"]).to_csv(path, index=False)


def test_merge_boxes_measures_the_corner_noise_and_says_so_or_uses_the_one_given(tmp_path, capsys):
    path = tmp_path / "boxes.csv"
    _small_jittered_boxes(path, noise_sd=1.0)
    assert main(["merge-boxes", "--input", str(path), "--output", str(tmp_path / "m.csv"), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["pointing_noise_source"] == "measured"
    assert 0.6 < measured["pointing_noise"] < 1.5
    assert main(["merge-boxes", "--input", str(path), "--output", str(tmp_path / "p.csv"),
                 "--pointing-noise", "0", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["pointing_noise"] == 0.0 and plain["pointing_noise_source"] == "given"
    # allowing for the noise finds the small objects plain IoU splits below quorum
    assert measured["merged_objects"] > plain["merged_objects"]
    assert main(["merge-boxes", "--input", str(path), "--output", str(tmp_path / "t.csv")]) == 0
    assert "corner noise allowed for" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "lots"])
def test_merge_boxes_refuses_a_pointing_noise_that_is_not_a_finite_number_at_least_0(tmp_path, capsys, value):
    path = tmp_path / "boxes.csv"
    _small_jittered_boxes(path, noise_sd=1.0)
    with pytest.raises(SystemExit) as exit_:
        main(["merge-boxes", "--input", str(path), "--output", str(tmp_path / "m.csv"),
              "--pointing-noise", value])
    assert exit_.value.code == 2
    assert "--pointing-noise" in capsys.readouterr().err
