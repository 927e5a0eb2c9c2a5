"""The command-line contract (DESIGN.md), for every command, as a user's shell sees it.

Bad input exits 1 with one ``error:`` line per problem on stderr, misuse exits 2 through
argparse, nothing ever prints a traceback, ``--json`` is strict JSON and every ``--help``
says what the command does in plain text.

Each case runs ``python -m annotation_pipeline.cli`` in a subprocess, as the README's users
run it. A subprocess costs seconds of imports on these shared machines, so the fast suite
runs every case in-process through ``cli.main.main`` (same parser, same handlers, same exit
codes) and a few of them in a subprocess; ``-m slow`` runs every case in a subprocess too.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotation_pipeline.cli.common import MAX_PROBLEM_LINES
from annotation_pipeline.cli.main import build_parser, main
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.malformed.corpus import BATCH, VENDOR, dumps, make_tasks, valid_export

REPO = Path(__file__).resolve().parents[2]
ANSWERS_HEADER = "item_id,annotator_id,label\n"
BOXES_HEADER = "item_id,annotator_id,label,x_min,y_min,x_max,y_max\n"
N_BAD_COORDINATES = 30  # more than the cap, so the "... and N more" line shows
UNSET = ("DAGSTER_HOME", "ANNOTATION_PIPELINE_ROOT")


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, via: str = "subprocess") -> Outcome:
    """The command's exit code and output, from a subprocess or from ``main`` in this process."""
    if via == "subprocess":
        base = {k: v for k, v in os.environ.items() if k not in UNSET}
        proc = subprocess.run([sys.executable, "-m", "annotation_pipeline.cli", *args], capture_output=True,
                              text=True, timeout=300, cwd=REPO, env={**base, **(env or {})})
        return Outcome(proc.returncode, proc.stdout, proc.stderr)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for name in UNSET:
            patch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's misuse and --help
            code = exit_.code
    return Outcome(int(code or 0), out.getvalue(), err.getvalue())


def ways(names, smoke: set[str]) -> list:
    """Each case in-process; in a subprocess too, in the fast suite for ``smoke``, else as slow."""
    return [pytest.param(n, "in_process", id=f"{n} [in-process]") for n in names] + [
        pytest.param(n, "subprocess", id=f"{n} [subprocess]", marks=() if n in smoke else pytest.mark.slow)
        for n in names]


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of inputs a user can get wrong, named by what is wrong with them."""
    d = tmp_path_factory.mktemp("bad_inputs")
    (d / "answers.csv").write_text(ANSWERS_HEADER + "i1,a1,day\ni1,a2,day\ni2,a1,fog\ni2,a2,night\n")
    (d / "boxes.csv").write_text(BOXES_HEADER + "i1,a1,car,1,1,10,10\ni1,a2,car,2,2,11,11\n")
    (d / "header_only.csv").write_text(ANSWERS_HEADER)
    (d / "boxes_header_only.csv").write_text(BOXES_HEADER)
    (d / "empty.csv").write_bytes(b"")
    (d / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 50)
    (d / "latin1.csv").write_bytes(ANSWERS_HEADER.encode() + "i1,Jos\xe9,caf\xe9\n".encode("latin-1"))
    (d / "wrong_columns.csv").write_text("a,b,c\n1,2,3\n")
    (d / "empty_cells.csv").write_text(ANSWERS_HEADER + "i1,,day\n,a2,\n")
    (d / "not_numbers.csv").write_text(BOXES_HEADER + "".join(
        f"i{k},a1,car,one,1,10,10\n" for k in range(N_BAD_COORDINATES)))
    (d / "inverted.csv").write_text(BOXES_HEADER + "i1,a1,car,10,1,1,10\ni1,a2,car,1,10,10,1\n")
    (d / "a_folder.csv").mkdir()
    os.mkfifo(d / "a_pipe.csv")  # reading it would block forever: the command must not try
    (d / "a_file").write_text("not a folder")
    empty_root = d / "empty_root"
    empty_root.mkdir()
    # a data root whose only prediction log of the day is not a table at all
    unreadable = DataLayout(d / "unreadable_logs").predictions("2026-11-20")
    unreadable.mkdir(parents=True)
    (unreadable / "serving.csv").write_bytes(b"\x00\xff\xfe\x00" * 100)
    inbox = DataLayout(d / "intake_root").inbox(VENDOR) / BATCH
    inbox.mkdir(parents=True)
    (inbox / "a_folder.json").mkdir()
    (inbox / "ok.json").write_bytes(dumps(valid_export("ann-01")))
    os.mkfifo(inbox / "a_pipe.json")
    return d


# (command line with {bad} for the folder above, exit code, lines on stderr, text in the first line)
# lines: how many "error:" lines; None when argparse (exit 2) prints its usage.
BAD_INPUTS = {
    # consensus
    "consensus: missing input": ("consensus --input {bad}/nope.csv --output {out}", 1, 1, "nope.csv: file not found"),
    "consensus: empty file": ("consensus --input {bad}/empty.csv --output {out}", 1, 1, "the file is empty"),
    "consensus: header only": ("consensus --input {bad}/header_only.csv --output {out}", 1, 1, "no rows after the header"),
    "consensus: binary file": ("consensus --input {bad}/binary.csv --output {out}", 1, 1, "binary.csv"),
    "consensus: not UTF-8": ("consensus --input {bad}/latin1.csv --output {out}", 1, 1, "not a readable UTF-8 CSV"),
    "consensus: wrong columns": ("consensus --input {bad}/wrong_columns.csv --output {out}", 1, 1,
                                 "missing column(s) item_id, annotator_id, label"),
    "consensus: empty cells": ("consensus --input {bad}/empty_cells.csv --output {out}", 1, 3,
                               "line 2: column annotator_id is empty"),
    "consensus: folder as input": ("consensus --input {bad}/a_folder.csv --output {out}", 1, 1, "is a folder"),
    "consensus: pipe as input": ("consensus --input {bad}/a_pipe.csv --output {out}", 1, 1, "not a regular file"),
    "consensus: output folder missing": ("consensus --input {bad}/answers.csv --output {bad}/no/such/dir/l.csv",
                                         1, 1, "does not exist"),
    "consensus: output is a folder": ("consensus --input {bad}/answers.csv --output {bad}/a_folder.csv",
                                      1, 1, "is a folder"),
    "consensus: gold with wrong columns": ("consensus --input {bad}/answers.csv --output {out} "
                                           "--gold {bad}/wrong_columns.csv", 1, 1, "missing column(s) item_id, label"),
    "consensus: unknown method": ("consensus --input {bad}/answers.csv --output {out} --method best", 2, None,
                                  "invalid choice"),
    # agreement
    "agreement: missing input": ("agreement --input {bad}/nope.csv", 1, 1, "file not found"),
    "agreement: header only": ("agreement --input {bad}/header_only.csv", 1, 1, "no rows after the header"),
    "agreement: wrong columns": ("agreement --input {bad}/wrong_columns.csv", 1, 1, "missing column(s)"),
    "agreement: pipe as input": ("agreement --input {bad}/a_pipe.csv", 1, 1, "not a regular file"),
    "agreement: no input option": ("agreement", 2, None, "--input"),
    # merge-boxes
    "merge-boxes: every non-numeric coordinate, capped": (
        "merge-boxes --input {bad}/not_numbers.csv --output {out}", 1, MAX_PROBLEM_LINES + 1,
        "line 2: column x_min is not a number ('one')"),
    "merge-boxes: inverted boxes": ("merge-boxes --input {bad}/inverted.csv --output {out}", 1, 2,
                                    "line 2: x_max < x_min"),
    "merge-boxes: header only": ("merge-boxes --input {bad}/boxes_header_only.csv --output {out}", 1, 1,
                                 "no rows after the header"),
    "merge-boxes: output folder missing": ("merge-boxes --input {bad}/boxes.csv --output {bad}/nowhere/m.csv",
                                           1, 1, "does not exist"),
    "merge-boxes: iou above 1": ("merge-boxes --input {bad}/boxes.csv --output {out} --iou 1.5", 2, None,
                                 "--iou: must be in (0, 1]"),
    "merge-boxes: negative iou": ("merge-boxes --input {bad}/boxes.csv --output {out} --iou=-0.1", 2, None,
                                  "--iou: must be in (0, 1]"),
    "merge-boxes: iou zero": ("merge-boxes --input {bad}/boxes.csv --output {out} --iou 0", 2, None, "--iou"),
    "merge-boxes: iou not a number": ("merge-boxes --input {bad}/boxes.csv --output {out} --iou nan", 2, None,
                                      "--iou"),
    "merge-boxes: quorum zero": ("merge-boxes --input {bad}/boxes.csv --output {out} --quorum 0", 2, None,
                                 "--quorum: must be at least 1"),
    "merge-boxes: quorum not a number": ("merge-boxes --input {bad}/boxes.csv --output {out} --quorum two", 2,
                                         None, "--quorum: expected a whole number"),
    # intake
    "intake: missing files, one line each": ("intake {bad}/a.json {bad}/b.json --root {bad}/intake_root "
                                             f"--vendor {VENDOR}", 1, 2, "a.json: file not found"),
    # a folder given as FILE stands for its entries (a batch folder), so only the pipe is refused
    "intake: a pipe": (f"intake {{bad}}/intake_root/vendors/{VENDOR}/inbox/{BATCH}/a_pipe.json "
                       "--root {bad}/intake_root", 1, 1, "not a regular file"),
    "intake: ontology not JSON": (f"intake {{bad}}/intake_root/vendors/{VENDOR}/inbox/{BATCH}/ok.json "
                                  "--root {bad}/intake_root --ontology {bad}/binary.csv", 1, 1, "not an ontology"),
    "intake: ontology is a pipe": (f"intake {{bad}}/intake_root/vendors/{VENDOR}/inbox/{BATCH}/ok.json "
                                   "--root {bad}/intake_root --ontology {bad}/a_pipe.csv", 1, 1, "not a regular file"),
    "intake: no file": ("intake --root {bad}/intake_root", 2, None, "FILE"),
    # demo (each fails before any work)
    "demo: no images": ("demo --root {bad}/demo --images 0", 2, None, "--images: must be at least 1"),
    "demo: negative seed": ("demo --root {bad}/demo --seed=-1", 2, None, "--seed: must be 0 or more"),
    "demo: malformed date": ("demo --root {bad}/demo --date 2026-02-30", 1, 1, "expected YYYY-MM-DD"),
    "demo: data root is a file": ("demo --root {bad}/a_file", 1, 1, "the data root is a file"),
    "demo: DAGSTER_HOME does not exist": ("demo --root {bad}/demo", 1, 1, "DAGSTER_HOME="),
    # releases and trace
    "releases: data root is a file": ("releases --root {bad}/a_file", 1, 1, "the data root is a file"),
    "trace: no releases": ("trace abc --root {bad}/empty_root", 1, 1, "no releases under"),
    "trace: data root is a file": ("trace abc --root {bad}/a_file", 1, 1, "the data root is a file"),
    "trace: no item": ("trace --root {bad}/empty_root", 2, None, "item_id"),
    "trace: --list and an item": ("trace abc --list --root {bad}/empty_root", 2, None, "--list"),
    "trace --list: no releases": ("trace --list --root {bad}/empty_root", 1, 1, "no releases under"),
    "trace --list: data root is a file": ("trace --list --root {bad}/a_file", 1, 1, "the data root is a file"),
    # drift
    "drift: malformed date": ("drift --date 20261120 --root {bad}/empty_root", 1, 1, "expected YYYY-MM-DD"),
    "drift: no prediction log": ("drift --date 2026-11-20 --root {bad}/empty_root", 1, 1, "no prediction log"),
    "drift: only an unreadable log": ("drift --date 2026-11-20 --root {bad}/unreadable_logs", 1, 1,
                                      "unreadable_log"),
    "drift: no date": ("drift --root {bad}/empty_root", 2, None, "--date"),
}
ENV = {"demo: DAGSTER_HOME does not exist": {"DAGSTER_HOME": "/nonexistent/dagster_home"}}
SMOKE = {"consensus: pipe as input", "merge-boxes: every non-numeric coordinate, capped", "merge-boxes: iou above 1",
         "demo: DAGSTER_HOME does not exist"}


@pytest.mark.parametrize("case, via", ways(BAD_INPUTS, SMOKE))
def test_bad_input_is_one_line_per_problem_and_misuse_exits_2(case, via, bad, tmp_path):
    command, code, lines, says = BAD_INPUTS[case]
    proc = run_cli(*command.format(bad=bad, out=tmp_path / "out.csv").split(), env=ENV.get(case), via=via)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip().splitlines()
    if code == 2:  # argparse: usage, then one error line naming the option
        assert err[0].startswith("usage: annotation-pipeline") and "error:" in err[-1] and says in err[-1]
        return
    assert len(err) == lines and all(line.startswith("error: ") for line in err), err
    assert says in err[0], err
    if lines > MAX_PROBLEM_LINES:
        assert err[-1] == f"error: ... and {N_BAD_COORDINATES - MAX_PROBLEM_LINES} more"
    assert not (tmp_path / "out.csv").exists()  # nothing half-made


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(bad, monkeypatch, capsys):
    # A failure no check anticipates (here: the release store breaking inside) must still reach
    # the user as one line; --debug lets it through, traceback and all.
    from annotation_pipeline.release.store import DvcReleaseStore

    def broken(self):
        raise RuntimeError("the store broke in a way nobody foresaw")

    monkeypatch.setattr(DvcReleaseStore, "list_releases", broken)
    assert main(["releases", "--root", str(bad)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "--debug" in line and "Traceback" not in line
    with pytest.raises(RuntimeError):
        main(["--debug", "releases", "--root", str(bad)])


# ---------------------------------------------------------------- --json is strict JSON

def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, as JSON.parse and RFC 8259 do."""
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_strict_parser_refuses_nan():
    with pytest.raises(ValueError):
        strict_loads('{"a": NaN}')


@pytest.fixture(scope="module")
def good_root(tmp_path_factory) -> Path:
    """A data root where intake, drift, releases and trace all have something to answer."""
    root = tmp_path_factory.mktemp("good_root")
    layout = DataLayout(root)
    make_tasks().to_parquet(_mkparent(layout.handoff_tasks(BATCH)))
    (_mkparent(layout.inbox(VENDOR) / BATCH / "ann-01.json")).write_bytes(dumps(valid_export("ann-01")))
    rng = np.random.default_rng(0)
    for path, labels in ((layout.reference_log("m1"), ["day", "night"]),
                         (layout.prediction_log("2026-11-20", "serving"), ["fog", "fog", "day"])):
        n = 300
        pd.DataFrame({"logged_at": "2026-11-20T10:00:00Z", "model_version": "m1",
                      "image_path": [f"monitoring/images/{k}.png" for k in range(n)],
                      "predicted_label": rng.choice(labels, n), "confidence": rng.uniform(0.2, 1, n)}
                     ).to_parquet(_mkparent(path))
    _publish_release(root)
    return root


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _publish_release(root: Path) -> None:
    """One release of a scene label and a box: the scene label's coordinates are NaN on disk."""
    from annotation_pipeline.contracts import ANNOTATIONS, CONSENSUS_LABELS, RAW_ITEMS
    from annotation_pipeline.release.report import build_provenance
    from annotation_pipeline.release.store import DvcReleaseStore, merge_into_dataset
    from annotation_pipeline.settings import load_settings

    labels = CONSENSUS_LABELS.conform(pd.DataFrame({
        "item_id": "item1", "kind": ["choice", "box"], "label": ["fog", "car"],
        "x_min": [np.nan, 1.0], "y_min": [np.nan, 2.0], "x_max": [np.nan, 30.0], "y_max": [np.nan, 40.0],
        "geometry_wkb": None, "confidence": [0.9, 0.8], "n_annotators": 3, "n_assigned": 3,
        "method": ["ds", "iou_cluster"], "annotation_ids": ["a1 a2", "a3"]}))
    answers = ANNOTATIONS.empty()
    answers = ANNOTATIONS.conform(pd.concat([answers, pd.DataFrame({
        "annotation_id": ["a1", "a2", "a3"], "batch_id": "b1", "task_id": "1", "item_id": "item1",
        "annotator_id": ["x", "y", "x"], "vendor": "v", "kind": ["choice", "choice", "box"],
        "label": ["fog", "fog", "car"], "x_min": [np.nan, np.nan, 1.0], "y_min": [np.nan, np.nan, 2.0],
        "x_max": [np.nan, np.nan, 30.0], "y_max": [np.nan, np.nan, 40.0], "geometry_wkb": None,
        "image_width": 100.0, "image_height": 100.0, "lead_time_s": np.nan, "is_gold": False,
        "source_file": "b1/x.json", "source_sha256": "f" * 64, "ontology_version": "1",
        "guidelines_version": "1", "model_version": "m1"})], ignore_index=True))
    raw = RAW_ITEMS.conform(pd.DataFrame({
        "item_id": ["item1"], "partition_date": "2026-11-20", "source_file": "cam.png",
        "raw_path": "raw/2026-11-20/item1.png", "media_type": "image/png", "width": 100, "height": 100,
        "byte_size": 10, "metadata_json": "{}", "caption": None}))
    store = DvcReleaseStore.from_settings(load_settings(root=root))
    dataset = merge_into_dataset(None, labels, "2026-11-20")
    provenance = merge_into_dataset(None, build_provenance(labels, answers, raw), "2026-11-20")
    store.publish(dataset, provenance, {"dataset": {"labels": len(dataset)}}, ["2026-11-20"], {"ontology": "1"})


JSON_COMMANDS = {
    "consensus": "consensus --input {bad}/answers.csv --output {tmp}/labels.csv --method ds --json",
    "agreement": "agreement --input {bad}/answers.csv --json",
    "merge-boxes": "merge-boxes --input {bad}/boxes.csv --output {tmp}/merged.csv --json",
    "intake": f"intake {{root}}/vendors/{VENDOR}/inbox/{BATCH}/ann-01.json --root {{root}} --json",
    "releases": "releases --root {root} --json",
    "trace": "trace item1 --root {root} --json",
    "trace --list": "trace --list --root {root} --json",
    "drift": "drift --date 2026-11-20 --root {root} --json",
}


@pytest.mark.parametrize("command, via", ways(JSON_COMMANDS, {"trace"}))
def test_json_output_is_strict_json(command, via, bad, good_root, tmp_path):
    proc = run_cli(*JSON_COMMANDS[command].format(bad=bad, root=good_root, tmp=tmp_path).split(), via=via)
    assert proc.returncode == 0, proc.stderr
    result = strict_loads(proc.stdout)
    assert isinstance(result, dict) and result
    if command == "trace":  # the scene label has no box: null, where Python's json would write NaN
        choice = next(label for label in result["labels"] if label["kind"] == "choice")
        assert choice["x_min"] is None and result["problems_with_release_files"] == []
    if command == "trace --list":
        assert [i["item_id"] for i in result["items"]] == ["item1"] and result["n_labels"] == 2
    if command == "drift":
        assert result["drifted"] is True and any(row["p_value"] is None for row in result["signal_rows"])


# ---------------------------------------------------------------- --help

def _subcommands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_command_of_the_contract_is_there():
    assert {"demo", "intake", "consensus", "agreement", "merge-boxes", "releases", "trace", "drift"} <= set(
        _subcommands())


@pytest.mark.parametrize("command, via", ways(_subcommands(), set()))
def test_help_says_what_the_command_does_in_plain_text(command, via):
    proc = run_cli(command, "--help", via=via)
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    usage, _, rest = text.partition("\n\n")
    description = rest.split("options:")[0].strip()
    assert usage.startswith(f"usage: annotation-pipeline {command}")
    assert len(description.split()) >= 8, f"{command} --help says too little: {description!r}"
    for markup in ("``", ":func:", ":class:", ":meth:", ".. ", "**"):
        assert markup not in text, f"{command} --help shows reStructuredText {markup!r}"
    assert "--json" in text
