"""Which exchange a batch went through: a batch sent again through another exchange leaves the
earlier exchange's returns aside, so intake does not read the same tasks' answers twice."""

import pandas as pd

from annotation_pipeline.atomic_files import write_parquet_atomic
from annotation_pipeline.contracts import VENDOR_TASKS
from annotation_pipeline.layout import DataLayout
from annotation_pipeline.vendor.handoff import sent_through, supersede_returns, tasks_sent

BATCH = "acme-2026-11-21-ab"


def _recorded(layout: DataLayout, exchange: str | None) -> None:
    write_parquet_atomic(VENDOR_TASKS.empty(), layout.handoff_tasks(BATCH))
    layout.handoff_exchange(BATCH).unlink(missing_ok=True)
    if exchange is not None:
        layout.handoff_exchange(BATCH).write_text(f'{{"exchange": "{exchange}", "location": "x"}}')


def test_returns_of_an_earlier_exchange_are_moved_aside_and_those_of_the_same_exchange_stay(tmp_path):
    layout = DataLayout(tmp_path)
    inbox = layout.inbox_batch("acme", BATCH)
    inbox.mkdir(parents=True)
    (inbox / "ann-01.json").write_text("[]")
    _recorded(layout, "label_studio at http://ls")
    assert supersede_returns(layout, "acme", BATCH, "label_studio at http://ls") is None  # same exchange: kept
    assert (inbox / "ann-01.json").is_file()
    _recorded(layout, None)  # recorded before the exchange was: the folder exchange's returns
    assert supersede_returns(layout, "acme", BATCH, "folder at anywhere") is None  # still the folder's: kept
    assert (inbox / "ann-01.json").is_file()
    moved = supersede_returns(layout, "acme", BATCH, "label_studio at http://ls")
    assert moved == layout.superseded_returns("acme", BATCH) and (moved / "ann-01.json").is_file()
    assert not inbox.exists()


def test_only_batches_recorded_under_this_exchange_and_still_held_count_as_sent(tmp_path):
    layout = DataLayout(tmp_path)
    _recorded(layout, "folder at somewhere")
    assert sent_through(layout, BATCH) == "folder at somewhere"
    assert tasks_sent(layout, "acme", "2026-11-21", exchange="label_studio at http://ls").empty
    assert isinstance(tasks_sent(layout, "acme", "2026-11-21", exchange="folder at somewhere"), pd.DataFrame)
    assert tasks_sent(layout, "acme", "2026-11-21", exchange="folder at somewhere", holds=lambda b: False).empty
