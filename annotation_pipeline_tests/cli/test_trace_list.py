"""``annotation-pipeline trace --list``: the item ids there are to trace, with their releases (issue #22).

A root with two releases (v0001: one day of three items, v0002: that day and the next). Every
listed id traces (exit 0); nothing to list or an unknown release is bad input (exit 1, one
line), an item id together with --list is misuse (exit 2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from annotation_pipeline.cli.main import main
from annotation_pipeline.layout import DataLayout
from annotation_pipeline_tests.release.days import release_day, store_for

DAY_1, DAY_2 = "2026-11-20", "2026-11-21"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("listed") / "root"
    store = store_for(root)
    release_day(store, DAY_1)
    release_day(store, DAY_2)
    return root


def _run(capsys, *argv) -> tuple[int, str, list[str]]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's misuse
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def _strict(text: str) -> dict:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))


def test_list_names_every_released_item_with_the_releases_holding_it_and_each_traces(published, capsys):
    code, out, err = _run(capsys, "trace", "--list", "--root", str(published), "--json")
    assert code == 0 and err == []
    listed = _strict(out)
    day_1 = [f"item{DAY_1.replace('-', '')}{k}" for k in range(3)]
    day_2 = [f"item{DAY_2.replace('-', '')}{k}" for k in range(3)]
    assert [i["item_id"] for i in listed["items"]] == day_1 + day_2
    assert listed["releases"] == ["v0001", "v0002"] and listed["n_items"] == 6 and listed["n_labels"] == 6
    by_id = {i["item_id"]: i for i in listed["items"]}
    assert by_id[day_1[0]]["releases"] == ["v0001", "v0002"] and by_id[day_2[0]]["releases"] == ["v0002"]
    assert by_id[day_1[0]]["partition_date"] == DAY_1 and by_id[day_1[0]]["latest_release"] == "v0002"
    assert by_id[day_2[2]]["labels"] == [{"kind": "box", "label": "car", "count": 1}]
    for item in (day_1[0], day_2[2]):  # what is listed is what trace follows
        assert _run(capsys, "trace", item, "--root", str(published))[0] == 0

    code, text, _ = _run(capsys, "trace", "--list", "--root", str(published))
    lines = text.splitlines()
    assert code == 0 and lines[0].startswith("6 items to trace in releases v0001..v0002 (6 labels")
    assert f"  {day_1[0]}  {DAY_1}  v0001,v0002  1 labels: box car" in lines and len(lines) == 7


def test_list_of_one_release_keeps_to_it(published, capsys):
    code, out, _ = _run(capsys, "trace", "--list", "--release", "v0001", "--root", str(published), "--json")
    listed = _strict(out)
    assert code == 0 and listed["release"] == "v0001" and listed["releases"] == ["v0001"]
    assert {i["item_id"][:12] for i in listed["items"]} == {f"item{DAY_1.replace('-', '')}"}
    assert all(i["releases"] == ["v0001"] for i in listed["items"])


def test_nothing_to_list_and_an_unknown_release_are_one_line_errors_and_misuse_exits_2(published, tmp_path,
                                                                                         capsys):
    assert _run(capsys, "trace", "--list", "--release", "v0009", "--root", str(published)) == \
        (1, "", ["error: release 'v0009' not found; known: v0001, v0002"])
    assert _run(capsys, "trace", "--list", "--root", str(tmp_path / "nowhere")) == \
        (1, "", [f"error: no releases under {tmp_path / 'nowhere'}: nothing to trace"])
    code, _, err = _run(capsys, "trace", "someitem", "--list", "--root", str(published))
    assert code == 2 and err[0].startswith("usage: ") and "--list" in err[-1] and "someitem" in err[-1]
    code, _, err = _run(capsys, "trace", "--root", str(published))
    assert code == 2 and "item_id" in err[-1] and "--list" in err[-1]
    # a release whose labels were emptied lists nothing: said, not an empty success
    root = tmp_path / "root"
    shutil.copytree(published, root, symlinks=True)
    labels = DataLayout(root).releases / "v0001" / "labels.parquet"
    labels.parent.chmod(0o755)
    labels.chmod(0o644)
    pd.read_parquet(labels).iloc[:0].to_parquet(labels, index=False)
    code, out, err = _run(capsys, "trace", "--list", "--release", "v0001", "--root", str(root))
    assert (code, out, err) == (1, "", ["error: release v0001: no labels, nothing to trace"])


def test_list_of_a_tampered_history_prints_and_then_fails(published, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(published, root, symlinks=True)
    labels = DataLayout(root).releases / "v0002" / "labels.parquet"
    labels.parent.chmod(0o755)
    labels.chmod(0o644)
    frame = pd.read_parquet(labels)
    frame.loc[0, "label"] = "forged"
    frame.to_parquet(labels, index=False)
    code, out, err = _run(capsys, "trace", "--list", "--root", str(root))
    assert code == 1 and out and err and err[-1].startswith("error: the release history was tampered with")
